import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";

// What the local stack needs to know about a process it finds running (a server an earlier start
// left behind), before it decides to share it, stop it or ignore a stale pid file.

/** A process's program name and parent pid: from /proc on Linux, from `ps` elsewhere (macOS). */
export function processInfo(pid: number): { name: string; parentPid: number } | undefined {
  try {
    if (fs.existsSync("/proc/self/stat")) {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      return { name, parentPid: Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) };
    }
    const [parentPid, ...command] = execFileSync("ps", ["-o", "ppid=", "-o", "comm=", "-p", String(pid)], { encoding: "utf8" }).trim().split(/\s+/);
    return { name: path.basename(command.join(" ")), parentPid: Number(parentPid) };
  } catch {
    // The process just exited (or no ps): nothing is known about it.
    return undefined;
  }
}

/**
 * Whether a process with this pid runs (signal 0 checks without signalling). A zombie does not:
 * where nothing reaps orphans (a container's PID 1) a dead server lingers as one, ports closed.
 */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    // ESRCH: no such process; the pid file is stale.
    return false;
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    // No /proc (macOS), or it exited meanwhile: signal 0 is all there is to go on.
    return !fs.existsSync("/proc/self/stat");
  }
}

/** Sends `signal` and waits up to `timeoutMs` for the process to go; answers whether it went. */
export async function signalAndWait(pid: number, signal: NodeJS.Signals, timeoutMs: number): Promise<boolean> {
  try {
    process.kill(pid, signal);
  } catch (error) {
    // ESRCH: it exited between the look and the signal, which is all this wanted.
    if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
  }
  for (let waited = 0; waited < timeoutMs && isAlive(pid); waited += 100) await new Promise((r) => setTimeout(r, 100));
  return !isAlive(pid);
}

/**
 * Whether the process's command line has `argument` (Linux: /proc; elsewhere unknown, so true and
 * the program name is all there is to go on).
 */
export function commandLineIncludes(pid: number, argument: string): boolean {
  if (!fs.existsSync("/proc/self/cmdline")) return true;
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").includes(argument);
  } catch {
    // Exited meanwhile, or not ours to look into.
    return false;
  }
}

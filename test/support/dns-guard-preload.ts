/**
 * Imported by the test harness, so every integration test process has it: any DNS lookup of Apple's or
 * Google's push hosts fails at once, so a test that would escape the simulator fails fast instead
 * of reaching (or hanging on) the real providers.
 */
import { installDnsGuard } from "../../src/providers/dns-guard";

installDnsGuard();

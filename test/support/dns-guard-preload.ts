/**
 * Loaded into every test process by `npm test` (node --import): any DNS lookup of Apple's or
 * Google's push hosts fails at once, so a test that would escape the simulator fails fast instead
 * of reaching (or hanging on) the real providers.
 */
import { installDnsGuard } from "../../src/providers/dns-guard";

installDnsGuard();

#!/usr/bin/env node
// `npx automata …`: the operator CLI, run from the TypeScript sources through tsx.
require("tsx/cjs");
require("../src/cli/automata.ts");

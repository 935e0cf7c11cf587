#!/usr/bin/env node
// The `mlmesh` command. Sources are TypeScript run through tsx's loader, so a fresh clone
// needs no build step between `npm ci` and `npm start`.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../cli/main.ts");
process.exitCode = await main(process.argv.slice(2));

// Writes a V8 CPU profile of the process it is loaded into when that process exits, for the
// processes a benchmark starts (`--cpu-prof` is not allowed in NODE_OPTIONS, `--import` is):
//   BENCH_PROFILE_DIR=/tmp/prof npm run bench:mesh   (the bench passes this hook to the mesh)
// Open the .cpuprofile in Chrome DevTools or VS Code.
import fs from "node:fs";
import inspector from "node:inspector";

const dir = process.env.BENCH_PROFILE_DIR;
if (dir) {
  const session = new inspector.Session();
  session.connect();
  session.post("Profiler.enable");
  session.post("Profiler.setSamplingInterval", { interval: 250 });
  session.post("Profiler.start");
  // The main-thread inspector session answers synchronously, so this works inside "exit".
  process.on("exit", () => {
    session.post("Profiler.stop", (err, result) => {
      if (err) return;
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(`${dir}/mlmesh-${process.pid}.cpuprofile`, JSON.stringify(result.profile));
    });
  });
}

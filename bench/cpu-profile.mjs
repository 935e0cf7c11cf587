// Writes a V8 CPU profile of the process it is loaded into when that process exits, for the
// processes a benchmark starts (`--cpu-prof` is not allowed in NODE_OPTIONS, `--import` is):
//   BENCH_PROFILE_DIR=/tmp/prof npm run bench:mesh   (the bench passes this hook to the mesh)
// Open the .cpuprofile in Chrome DevTools or VS Code. BENCH_HEAP_PROFILE=1 also writes a
// sampling allocation profile (.heapprofile: where the bytes the GC collects come from).
import fs from "node:fs";
import inspector from "node:inspector";

const dir = process.env.BENCH_PROFILE_DIR;
if (dir) {
  const session = new inspector.Session();
  session.connect();
  session.post("Profiler.enable");
  session.post("Profiler.setSamplingInterval", { interval: 250 });
  session.post("Profiler.start");
  const heap = process.env.BENCH_HEAP_PROFILE === "1";
  if (heap) {
    session.post("HeapProfiler.enable");
    // Every sample kept, including what the GC already took: allocation sites, not live memory.
    session.post("HeapProfiler.startSampling", { samplingInterval: 16384, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  }
  // The main-thread inspector session answers synchronously, so this works inside "exit".
  process.on("exit", () => {
    if (heap) {
      session.post("HeapProfiler.stopSampling", (err, result) => {
        if (err) return;
        fs.mkdirSync(dir, { recursive: true });
        fs.writeFileSync(`${dir}/mlmesh-${process.pid}.heapprofile`, JSON.stringify(result.profile));
      });
    }
    session.post("Profiler.stop", (err, result) => {
      if (err) return;
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(`${dir}/mlmesh-${process.pid}.cpuprofile`, JSON.stringify(result.profile));
    });
  });
}

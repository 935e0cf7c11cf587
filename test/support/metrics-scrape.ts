// Reads series from a service's Prometheus /metrics page (what a scraper sees).

/** The value of an unlabelled (or first matching) sample of `name`, or undefined. */
export function sampleValue(text: string, name: string, labels?: string): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (labels === undefined ? !(rest.startsWith(" ") || rest.startsWith("{")) : !rest.startsWith(`{${labels}}`)) continue;
    const v = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (Number.isFinite(v)) return v;
  }
  return undefined;
}

export interface ProcessMemory {
  readonly rssBytes: number;
  readonly heapUsedBytes: number;
}

/** RSS and V8 heap used of the process behind `httpUrl` (prom-client default metrics). */
export async function processMemory(httpUrl: string, timeoutMs = 5000): Promise<ProcessMemory> {
  const res = await fetch(`${httpUrl}/metrics`, { signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  const rss = sampleValue(text, "process_resident_memory_bytes");
  const heap = sampleValue(text, "nodejs_heap_size_used_bytes");
  if (rss === undefined || heap === undefined) throw new Error(`${httpUrl}/metrics has no process_resident_memory_bytes / nodejs_heap_size_used_bytes`);
  return { rssBytes: rss, heapUsedBytes: heap };
}

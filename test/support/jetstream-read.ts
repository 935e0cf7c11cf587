// Reads every message of a JetStream stream (optionally one subject filter) from the start,
// with the Nats-Msg-Id header, to count what arrived and find duplicates.
import { connect } from "nats";

export interface StoredMessage {
  readonly subject: string;
  readonly msgId: string;
  readonly seq: number;
  readonly data: Uint8Array;
}

export async function readStream(url: string, stream: string, filterSubject?: string): Promise<StoredMessage[]> {
  const nc = await connect({ servers: url });
  try {
    const jsm = await nc.jetstreamManager();
    const info = await jsm.streams.info(stream);
    const total = Number(info.state.messages);
    const out: StoredMessage[] = [];
    if (total === 0) return out;
    const consumer = await nc.jetstream().consumers.get(stream, filterSubject ? { filterSubjects: filterSubject } : {});
    const last = Number(info.state.last_seq);
    for (;;) {
      const batch = await consumer.fetch({ max_messages: 1000, expires: 1000 });
      let got = 0;
      let atEnd = false;
      for await (const m of batch) {
        got++;
        out.push({ subject: m.subject, msgId: m.headers?.get("Nats-Msg-Id") ?? "", seq: m.seq, data: m.data });
        if (m.seq >= last) atEnd = true;
      }
      if (got === 0 || atEnd) break;
    }
    return out;
  } finally {
    await nc.close();
  }
}

/** Keys seen more than once. */
export function duplicates(keys: readonly string[]): string[] {
  const seen = new Set<string>();
  const dup = new Set<string>();
  for (const k of keys) (seen.has(k) ? dup : seen).add(k);
  return [...dup];
}

// Content-addressed artifact files and partial uploads on disk. An artifact is
// `<data>/registry/artifacts/<sha256>`, written once by renaming a verified upload into
// place (atomic on one file system), shared by every version with the same bytes, and
// re-hashed whenever it is read. Partial uploads are `<data>/registry/uploads/<id>.part`.

import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, readdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";

export const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Thrown by `readVerified` when the bytes on disk no longer match their digest. */
export class ArtifactCorruptError extends Error {
  constructor(
    readonly sha256: string,
    readonly actual: string,
  ) {
    super(`artifact ${sha256} is corrupt on disk (its content now hashes to ${actual})`);
  }
}

export class ArtifactFiles {
  readonly artifactsDir: string;
  readonly uploadsDir: string;

  constructor(dataDir: string) {
    this.artifactsDir = path.join(dataDir, "registry", "artifacts");
    this.uploadsDir = path.join(dataDir, "registry", "uploads");
  }

  async init(): Promise<void> {
    await mkdir(this.artifactsDir, { recursive: true });
    await mkdir(this.uploadsDir, { recursive: true });
  }

  artifactPath(sha256: string): string {
    if (!SHA256_HEX.test(sha256)) throw new Error(`not a sha256: ${sha256}`);
    return path.join(this.artifactsDir, sha256);
  }

  partPath(uploadId: string): string {
    return path.join(this.uploadsDir, `${uploadId}.part`);
  }

  /** Bytes currently in a partial upload (0 when there is none). */
  async partSize(uploadId: string): Promise<number> {
    try {
      return (await stat(this.partPath(uploadId))).size;
    } catch {
      return 0;
    }
  }

  async exists(sha256: string): Promise<boolean> {
    try {
      await stat(this.artifactPath(sha256));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Move a verified upload into the content store. When the content is already stored the
   * upload is dropped instead (same bytes by construction) and `deduplicated` is true.
   */
  async adopt(partFile: string, sha256: string): Promise<{ deduplicated: boolean }> {
    if (await this.exists(sha256)) {
      await rm(partFile, { force: true });
      return { deduplicated: true };
    }
    await rename(partFile, this.artifactPath(sha256));
    return { deduplicated: false };
  }

  async remove(sha256: string): Promise<void> {
    await rm(this.artifactPath(sha256), { force: true });
  }

  async removePart(uploadId: string): Promise<void> {
    await rm(this.partPath(uploadId), { force: true });
  }

  /** SHA-256 of a file's first `length` bytes, streamed (resuming an upload re-hashes its prefix). */
  async hashPrefix(file: string, length: number): Promise<ReturnType<typeof createHash>> {
    const hash = createHash("sha256");
    if (length === 0) return hash;
    for await (const chunk of createReadStream(file, { start: 0, end: length - 1, highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
    return hash;
  }

  /** Truncate a partial upload to `length` bytes (drop a tail that was never acknowledged). */
  async truncatePart(uploadId: string, length: number): Promise<void> {
    const fh = await open(this.partPath(uploadId), "r+");
    try {
      await fh.truncate(length);
    } finally {
      await fh.close();
    }
  }

  /**
   * Stream an artifact from `offset` in chunks of at most `chunkBytes`, hashing the whole
   * file as it goes (the prefix before `offset` is hashed but not sent); throws
   * ArtifactCorruptError after the last chunk if the digest differs.
   */
  async *readVerified(sha256: string, offset: number, chunkBytes: number): AsyncGenerator<Buffer> {
    const hash = createHash("sha256");
    let pos = 0;
    for await (const raw of createReadStream(this.artifactPath(sha256), { highWaterMark: chunkBytes })) {
      const chunk = raw as Buffer;
      hash.update(chunk);
      const end = pos + chunk.length;
      if (end > offset) yield chunk.subarray(Math.max(0, offset - pos));
      pos = end;
    }
    const actual = hash.digest("hex");
    if (actual !== sha256) throw new ArtifactCorruptError(sha256, actual);
  }

  /** Remove artifact files no version references (left by a crash between rename and commit). */
  async sweep(referenced: (sha256: string) => boolean): Promise<string[]> {
    const removed: string[] = [];
    for (const name of await readdir(this.artifactsDir)) {
      if (SHA256_HEX.test(name) && !referenced(name)) {
        await this.remove(name);
        removed.push(name);
      }
    }
    return removed;
  }

  /** Partial upload files, by upload id. */
  async partIds(): Promise<string[]> {
    return (await readdir(this.uploadsDir)).filter((f) => f.endsWith(".part")).map((f) => f.slice(0, -".part".length));
  }
}

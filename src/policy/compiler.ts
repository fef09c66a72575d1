// Compiles policy generations in a worker thread (compileWorker.ts), off the query thread: a
// reload of a large list took ~80 ms (100k rules) to ~750 ms (1M) of blocked event loop before
// (issue 8). One thread, started on the first reload and kept (unref'd) for the next; if it
// dies, the next compile starts another.
import { Worker } from 'node:worker_threads';
import { PolicyError } from '../errors.js';
import type { PolicyData } from './generation.js';

/** A compiled generation, and the files it was compiled from, byte for byte (for the last good snapshot). */
export interface Compiled {
  data: PolicyData;
  inputs: ReadonlyMap<string, Uint8Array>;
}
import type { CompileReply, CompileRequest } from './compileWorker.js';
import { workerUrl } from '../workerUrl.js';

export class PolicyCompiler {
  private worker: Worker | undefined;
  private seq = 0;
  private readonly waiting = new Map<number, { resolve: (c: Compiled) => void; reject: (e: Error) => void }>();

  /** The compiled data, or a PolicyError with every problem found. */
  compile(configFile: string): Promise<Compiled> {
    const worker = this.thread();
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      worker.postMessage({ id, configFile } satisfies CompileRequest);
      worker.ref(); // keep the process alive while a compile is pending
    });
  }

  private thread(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(workerUrl('compileWorker', import.meta.url));
    w.unref();
    w.on('message', (r: CompileReply) => {
      const p = this.waiting.get(r.id);
      this.waiting.delete(r.id);
      if (this.waiting.size === 0) w.unref();
      if (!p) return;
      if (r.ok) p.resolve({ data: r.data, inputs: r.inputs });
      else p.reject(r.internal !== undefined ? new Error(r.internal) : new PolicyError(r.problems));
    });
    const fail = (e: Error): void => {
      if (this.worker === w) this.worker = undefined;
      for (const p of this.waiting.values()) p.reject(e);
      this.waiting.clear();
    };
    w.on('error', fail);
    w.on('exit', (code) => fail(new Error(`the policy compiler thread exited (code ${code})`)));
    this.worker = w;
    return w;
  }

  close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    return w ? w.terminate().then(() => undefined) : Promise.resolve();
  }
}

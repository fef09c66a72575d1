// A worker query thread (workers: N > 1, see workers.ts): the same query path as the main
// thread (app.ts DataPlane), bound to the same addresses with SO_REUSEPORT. It holds no policy
// of its own making: the main thread compiles each generation once and hands it over.
import { Stats } from './metrics/stats.js';
import { parentPort, workerData } from 'node:worker_threads';
import { DataPlane } from './dataPlane.js';
import { systemClock } from './clock.js';
import { streamLogger } from './log.js';
import { hydrate } from './policy/generation.js';
import { PolicyHolder } from './policy/holder.js';
import { ReportBatcher } from './report/report.js';
import { IdentityHolder } from './identity/sources.js';
import { IdentityTable } from './identity/table.js';
import type { FromThread, ThreadInit, ToThread } from './workers.js';

const port = parentPort!;
const init = workerData as ThreadInit;
const send = (m: FromThread): void => port.postMessage(m);
const policy = new PolicyHolder(hydrate(init.data, init.number));
const identity = new IdentityHolder(IdentityTable.of(init.identity));
const stats = new Stats();
const report = new ReportBatcher((events) => send({ type: 'report', events }), () => systemClock.now(), identity);
const log = streamLogger();
const plane = new DataPlane(policy, identity, stats, log, systemClock, report, (zone, from) => send({ type: 'notify', zone, from }));

port.on('message', (m: ToThread) => {
  switch (m.type) {
    case 'policy': {
      const previous = policy.current;
      policy.current = hydrate(m.data, m.number);
      plane.swap(policy.current, previous);
      break;
    }
    case 'identity':
      // In place, O(change): a small change in this turn, a big one in slices (identity/table.ts).
      // Devices are new frozen objects, so no memoised view goes stale.
      identity.update(m.delta, (e) => e && log.error('SH_INTERNAL', 'a lease change could not be applied', { error: String(e) }));
      break;
    case 'stats':
      send({ type: 'stats', id: m.id, stats: plane.stats.toData(), gauges: plane.gauges() });
      break;
    case 'reopen':
      void plane.reopenLogs();
      break;
    case 'reloadTls':
      plane.reloadTls();
      break;
    case 'close':
      void plane.close().then(() => {
        report.flush();
        port.close();
      });
      break;
  }
});

plane
  .listen(init.endpoints.dns, true)
  .then(() => plane.listenEncrypted(init.endpoints.dot, init.endpoints.doh, true))
  .then(
  () => send({ type: 'ready' }),
  (e: unknown) => {
    send({ type: 'failed', message: e instanceof Error ? e.message : String(e) });
    port.close();
  },
);

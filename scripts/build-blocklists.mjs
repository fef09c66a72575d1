#!/usr/bin/env node
// Regenerates blocklists/tiktok.txt, tiktok-ads.txt and bytedance.txt from the
// researched data (../shared/data/tiktok-domains.tsv; sources and curation in
// tiktok-domains.md). Run: node scripts/build-blocklists.mjs [path/to/tiktok-domains.tsv]
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsv = process.argv[2] ?? join(root, '..', 'shared', 'data', 'tiktok-domains.tsv');
const rows = readFileSync(tsv, 'utf8').split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split('\t'));
const tiers = {
  'tiktok-core': { file: 'tiktok.txt', title: 'TikTok core: the app and website (API, CDN, video, live, login, web statics)' },
  'tiktok-ads-analytics': { file: 'tiktok-ads.txt', title: 'TikTok ads and analytics: Pixel, Ads/Events API, Pangle' },
  'bytedance-other': { file: 'bytedance.txt', title: 'ByteDance other products and infrastructure (CapCut, Lark, Douyin, Toutiao...): NOT covered by a TikTok ban; off by default' },
};
const today = new Date().toISOString().slice(0, 10);
for (const [tier, { file, title }] of Object.entries(tiers)) {
  const mine = rows.filter((r) => r[1] === tier).sort((a, b) => a[0].localeCompare(b[0]));
  const sources = [...new Set(mine.flatMap((r) => (r[2] ?? '').split(',')).filter(Boolean))].sort();
  const header = [
    `# sinkhole blocklist: ${title}`,
    `# ${mine.length} rules. Each rule blocks the domain and every name below it.`,
    `# Generated ${today} by scripts/build-blocklists.mjs from tiktok-domains.tsv (tier "${tier}").`,
    '# Sources (see tiktok-domains.md §1): AdGuard HostlistsRegistry services/tiktok.yml, NextDNS services/tiktok,',
    '#   hagezi native.tiktok, v2fly domain-list-community, blackmatrix7, mischosts/blocklistproject/danhorton7',
    '#   (one family), aao-fyi, decompiled TikTok app allow-lists. A rule needs AdGuard or NextDNS, or two',
    '#   independent families. Each line ends with the sources that support it.',
    `# Sources cited in this file: ${sources.join(', ')}`,
    '',
  ];
  const body = mine.map((r) => `${r[0]}  # ${r[2]}`);
  writeFileSync(join(root, 'blocklists', file), [...header, ...body, ''].join('\n'));
  console.log(`${file}: ${mine.length} rules`);
}

// Guard rail for list edits: a rule that is a public suffix (`com`, `co.uk`,
// `github.io`) blocks every site registered under it, so one slip would take
// a whole TLD off the network the moment the file is saved. Such a rule is
// refused unless its line carries ALLOW_SUFFIX_MARKER.
//
// The Public Suffix List (publicsuffix.org) is read through tldts, which
// ships it compiled, both the ICANN and the private sections (github.io,
// blogspot.com and s3.amazonaws.com are private-section suffixes). tldts
// decides every case; this module only keeps the list loader from asking it
// about the ~all rules that cannot be suffixes (see SuffixIndex).
import { createRequire } from 'node:module';
import { getPublicSuffix } from 'tldts';

/** Written in a comment on a rule's line, it keeps a public-suffix rule on purpose. */
export const ALLOW_SUFFIX_MARKER = 'sinkhole:allow-public-suffix';

// The input is already a lower-case domain without a trailing dot (listParser checked it):
// no URL to pick apart, no hostname to validate, never an IP address.
const OPTIONS = { allowPrivateDomains: true, extractHostname: false, validateHostname: false, detectIp: false, mixedInputs: false } as const;

/**
 * Whether `domain` is itself a public suffix. A single label always is: the
 * list's default rule `*` makes every TLD a suffix, known or not (`com`, and
 * also `lan` or `internal`).
 */
export function isPublicSuffix(domain: string): boolean {
  return getPublicSuffix(domain, OPTIONS) === domain;
}

/** The problem text for a refused rule, with the way out. */
export function publicSuffixMessage(domain: string): string {
  return (
    `"${domain}" is a public suffix: this rule would block every site under .${domain}. ` +
    `If that is really meant, end the line with "# ${ALLOW_SUFFIX_MARKER}"`
  );
}

// FNV-1a, 32-bit, over the name left to right. The list loader computes the
// same hash of the rule and of its parent (the rule without its first label)
// in the byte loop that validates the rule, at ~no extra cost.
export const SUFFIX_HASH_SEED = 0x811c9dc5 | 0;
export const SUFFIX_HASH_PRIME = 0x01000193;

function hashOf(name: string): number {
  let h = SUFFIX_HASH_SEED;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), SUFFIX_HASH_PRIME);
  return h;
}

/**
 * Asking tldts costs ~0.3 µs per name (a string made from the bytes, then the
 * lookup): about as much again as parsing the rule, so a million-rule list
 * would load a third slower (bench/rules-load.sh). Instead the list's own
 * rules are hashed once, and a rule is looked up in tldts only when its hash,
 * or its parent's hash under a wildcard rule (`*.ck`), is one of theirs.
 * A hash collision only costs a lookup; the answer is always tldts's.
 *
 * The rules are read from the trie tldts is built from, which is not part of
 * its documented API. If that ever fails to load or looks wrong, every rule
 * of up to MAX_SUFFIX_LABELS labels is looked up instead: slower, never laxer.
 */
interface SuffixIndex {
  rules: Set<number>;
  wildcardParents: Set<number>;
}

interface TrieData {
  nodeFlags: Uint8Array;
  edgeStart: Uint32Array | number[];
  edgeLength: Uint8Array | number[];
  edgeChild: Uint32Array | number[];
  labelText: string;
  rulesRoot: number;
}

/** The deepest rule of the list has 7 labels (`*.rds.cn-northwest-1.amazonaws.com.cn`); the fallback checks up to 8. */
export const MAX_SUFFIX_LABELS = 8;

function loadIndex(): SuffixIndex | undefined {
  try {
    const t = createRequire(import.meta.url)('tldts/dist/cjs/src/data/trie.js') as TrieData;
    const offsets: number[] = [];
    for (let e = 0, o = 0; e < t.edgeLength.length; e++) {
      offsets.push(o);
      o += t.edgeLength[e]!;
    }
    const index: SuffixIndex = { rules: new Set(), wildcardParents: new Set() };
    let count = 0;
    let ok = true;
    // Depth-first from the root (the TLDs); `labels` is the rule's labels, TLD first.
    const walk = (node: number, labels: string[]): void => {
      if (t.nodeFlags[node]! & 3 /* ICANN | PRIVATE */) {
        count++;
        const wild = labels.lastIndexOf('*');
        if (wild > 0 && wild < labels.length - 1) ok = false; // `a.*.b`: not a shape the list uses
        const name = [...labels].reverse().join('.');
        if (wild === labels.length - 1) index.wildcardParents.add(hashOf(name.slice(2)));
        else index.rules.add(hashOf(name));
      }
      for (let e = t.edgeStart[node]!; e < t.edgeStart[node + 1]!; e++) {
        walk(t.edgeChild[e]!, [...labels, t.labelText.slice(offsets[e], offsets[e]! + t.edgeLength[e]!)]);
      }
    };
    walk(t.rulesRoot, []);
    // The list has ~11,000 rules; far fewer means the trie was not read as it is laid out.
    if (!ok || count < 5000 || !index.rules.has(hashOf('co.uk')) || !index.wildcardParents.has(hashOf('ck'))) return undefined;
    return index;
  } catch {
    return undefined;
  }
}

let index: SuffixIndex | undefined | null = null;

/** Whether the fast filter is in use (a test keeps it so across tldts upgrades). */
export function suffixIndexLoaded(): boolean {
  if (index === null) index = loadIndex();
  return index !== undefined;
}

/**
 * False when the rule cannot be a public suffix; true when tldts must decide.
 * `hash` is the rule's SUFFIX hash, `parentHash` that of the rule without its
 * first label (any value when it has one label).
 */
export function mayBePublicSuffix(labels: number, hash: number, parentHash: number): boolean {
  if (labels === 1) return true;
  if (index === null) index = loadIndex();
  if (!index) return labels <= MAX_SUFFIX_LABELS;
  return index.rules.has(hash) || index.wildcardParents.has(parentHash);
}

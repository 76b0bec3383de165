// "Did you mean …?" for a mistyped command, flag or config key.

/** The candidate closest to `word` by edit distance, if it is close enough to be a typo. */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  let best: { candidate: string; distance: number } | undefined;
  for (const candidate of candidates) {
    const distance = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (best === undefined || distance < best.distance) best = { candidate, distance };
  }
  // Two edits on a long word is a typo; on a three-letter word it is another word.
  const allowed = Math.max(1, Math.min(2, Math.floor(word.length / 3)));
  return best !== undefined && best.distance <= allowed ? best.candidate : undefined;
}

/** `; did you mean "x"?`, or nothing. */
export function didYouMean(word: string, candidates: Iterable<string>, quote = (text: string) => `"${text}"`): string {
  const suggestion = closest(word, candidates);
  return suggestion === undefined ? '' : `; did you mean ${quote(suggestion)}?`;
}

// Optimal string alignment distance: a swap of two neighbours (stauts) counts as one edit.
function editDistance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) rows[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let distance = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) distance = Math.min(distance, rows[i - 2]![j - 2]! + 1);
      rows[i]![j] = distance;
    }
  }
  return rows[a.length]![b.length]!;
}

import type { ServiceStatus } from '../api.js';

/** Columns padded to their widest cell; the first row is the header. */
export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length)));
  return rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd()).join('\n') + '\n';
}

/** A line under the table for each service whose last deploy did not go live: why not. */
export function lastDeployNotes(services: ServiceStatus[]): string {
  let notes = '';
  for (const { name, lastDeploy } of services) {
    if (lastDeploy === null || lastDeploy.ok) continue;
    notes += `\n${name}: last deploy ${lastDeploy.outcome === 'rolled-back' ? 'was rolled back' : 'failed'}: ${lastDeploy.message}\n`;
  }
  return notes;
}

// How figures are written in the printed tables and the results file.

export const format = {
  int: (n) => Math.round(n).toLocaleString('en-US'),
  us: (n) => `${n.toFixed(0)} µs`,
  ms: (n) => `${n.toFixed(n < 10 ? 2 : 1)} ms`,
  ratio: (n) => n.toFixed(2),
  mib: (bytes) => `${(bytes / 1048576).toFixed(1)} MiB`,
  kib: (bytes) => `${(bytes / 1024).toFixed(1)} KiB`
}

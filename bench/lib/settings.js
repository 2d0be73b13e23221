// The benches' knobs, read once from BENCH_* environment variables. Benches are plain ESM run by
// `node bench/run.js`; they are never part of the test suite and nothing in bench/ asserts a figure.

function envNumber (name, fallback) {
  const value = Number(process.env[name])
  return Number.isFinite(value) && value > 0 ? value : fallback
}

/** Every knob, with modest defaults so `npm run bench` stays within a few minutes on 2 cores. */
export const settings = {
  seconds: envNumber('BENCH_SECONDS', 3), // one measured autocannon / echo run
  warmupSeconds: envNumber('BENCH_WARMUP_SECONDS', 2),
  rounds: envNumber('BENCH_ROUNDS', 5), // interleaved rounds per variant; the median is reported
  replicas: envNumber('BENCH_REPLICAS', 2), // server processes per variant, where a bench uses them
  connections: envNumber('BENCH_CONNECTIONS', 50),
  sseEvents: envNumber('BENCH_SSE_EVENTS', 200),
  streamMiB: envNumber('BENCH_STREAM_MIB', 1024),
  wsClients: envNumber('BENCH_WS_CLIENTS', 50),
  wsTunnels: envNumber('BENCH_WS_TUNNELS', 2000),
  fanoutStreams: envNumber('BENCH_FANOUT_STREAMS', 2000), // SSE streams open at once (streams bench)
  fanoutSeconds: envNumber('BENCH_FANOUT_SECONDS', 5), // event delays recorded with all of them open
  uploadMiB: envNumber('BENCH_UPLOAD_MIB', 1024),
  slowReaders: envNumber('BENCH_SLOW_READERS', 50),
  slowMiB: envNumber('BENCH_SLOW_MIB', 64), // the response each slow reader asks for
  slowSeconds: envNumber('BENCH_SLOW_SECONDS', 10), // how long the slow readers read, per target
  spreadRequests: envNumber('BENCH_SPREAD_REQUESTS', 100_000), // per balance policy (pools bench)
  failoverSeconds: envNumber('BENCH_FAILOVER_SECONDS', 9), // the load run a replica is killed in, a third of the way (pools bench)
  grpcStreams: envNumber('BENCH_GRPC_STREAMS', 200), // gRPC server streams open at once for the memory figure (grpc bench)
  resumeStreams: envNumber('BENCH_RESUME_STREAMS', 1000), // event streams open when a replica is killed (resume bench)
  resumeSeconds: envNumber('BENCH_RESUME_SECONDS', 5) // how long they run on after the kill (resume bench)
}

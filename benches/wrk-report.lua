-- benches/wrk-report.lua: after a wrk run, one line that load.sh parses:
-- ESS-WRK <requests> <seconds> <p50 µs> <p99 µs> <non-2xx/3xx answers> <socket errors>
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("ESS-WRK %d %.3f %d %d %d %d\n",
    summary.requests, summary.duration / 1e6,
    latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end

//! sessionkit's criterion benchmarks are this package's bench targets
//! (`cargo bench -p sessionkit-benches --bench redis`); `scripts/bench.sh`
//! runs them all and writes `docs/benchmarks.md`. This library is empty.

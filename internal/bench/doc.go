// Package bench measures durable relay between two real pocnet nodes and
// compares it with a floor: the least any durable two-hop relay over mutual
// TLS must spend on the same machine. It is a benchmark harness only and must
// never be imported by production code.
//
// Both systems carry 1 KiB messages from a client of state XAA to a watcher
// of state XBB over TLS 1.3 with the federation's certificates on 127.0.0.1:
//
//   - pocnet: two nodes started by package testfed (real mTLS, real Pebble
//     directories). An operator of XAA, role technical, calls
//     ContactService.SendCommunication; an operator of XBB, role technical,
//     holds a WatchEvents stream opened beforehand. A message counts as
//     arrived when that stream yields EVENT_TYPE_MESSAGE_RECEIVED for its id.
//   - floor (Floor in floor.go): the client calls RelayService.Deliver on
//     hop XAA with one envelope whose payload is the 1 KiB body; XAA makes
//     one synced Pebble write and forwards the call to hop XBB, which makes
//     one synced Pebble write and streams MESSAGE_RECEIVED to its
//     WatchEvents watchers. No new protobuf types: the floor reuses
//     RelayService and ContactService with hand-made handlers.
//
// For each system:
//
//   - Benchmark*Latency: one sender, one message at a time; latency runs
//     from just before the send call to the watcher seeing the message.
//     It reports p50-ms, p99-ms and msgs/s (one over the mean latency).
//   - Benchmark*Throughput: concurrent senders (64), each on its own
//     connection, each sending one message after the other without waiting
//     for delivery; msgs/s runs from the first send of the measured part to
//     the watcher seeing its last message. It also reports the latency under
//     that load, the CPU time of the whole process per message, the average
//     number of busy cores and the bytes written to storage per message
//     (/proc/self/io).
//
// Each benchmark sends a fixed number of messages every time it runs,
// whatever b.N is: run it with -benchtime 1x. The counts are test flags
// (-latency.n, -latency.warmup, -throughput.senders, -throughput.per-sender,
// -throughput.warmup). After the benchmarks, TestMain prints a table of both
// systems and the ratios pocnet p50 / floor p50 and pocnet msgs/s / floor
// msgs/s. When a measurement ran more than once every figure of the table is
// the median of its runs, which steadies it on a shared machine.
// BenchmarkRelay, which make bench runs, takes the four measurements in
// turn, -rounds times (5 by default), so that a drift of the machine falls
// on both systems alike. Without -bench nothing runs.
//
//	make bench
//	go test -run '^$' -bench '^BenchmarkRelay$' -benchtime 1x -rounds 9 ./internal/bench/
//	go test -run '^$' -bench Latency -benchtime 1x -count 3 ./internal/bench/
//	go test -run '^$' -bench PocnetThroughput -benchtime 1x -cpuprofile cpu.out ./internal/bench/
package bench

package sluice.bench;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.flink.api.common.JobExecutionResult;
import org.apache.flink.api.common.functions.MapFunction;
import org.apache.flink.api.common.functions.RichMapFunction;
import org.apache.flink.api.common.state.CheckpointListener;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;

/**
 * The job of Sluice's {@code bench_state}, on Apache Flink: a datagen
 * WordCount over many distinct keys, {@code keyBy(word).sum(1)} into a
 * discarding sink, at parallelism 1 in a local MiniCluster, with one state
 * backend and with or without a checkpoint interval. Record {@code i} carries
 * the word {@code key-<(r * 0x9E3779B97F4A7C15) mod keys>} where the rank
 * {@code r} is {@code i}, or with a skew S > 0 and {@code i >= keys} a Zipf
 * rank drawn from the bits Sluice's datagen generator gives record {@code i}:
 * exactly as {@code bench_state --skew S} makes it, so both engines see the
 * same key sequence.
 *
 * <p>Usage: {@code FlinkStateBench BACKEND INTERVAL KEYS RECORDS SKEW [key=value ...]}
 * where BACKEND is {@code hashmap} or {@code rocksdb}, INTERVAL is
 * {@code off} or a Flink duration such as {@code 1s}, and SKEW is 0 for
 * uniform keys; further arguments are Flink configuration settings. Prints
 * one {@code RESULT} line.
 */
public final class FlinkStateBench {
    /** Checkpoints completed in this JVM (the MiniCluster runs in it). */
    static final AtomicLong COMPLETED = new AtomicLong();

    private FlinkStateBench() {}

    /** Passes records through and counts completed checkpoints. */
    static final class CountCheckpoints extends RichMapFunction<Tuple2<String, Long>, Tuple2<String, Long>>
            implements CheckpointListener {
        @Override
        public Tuple2<String, Long> map(Tuple2<String, Long> value) {
            return value;
        }

        @Override
        public void notifyCheckpointComplete(long checkpointId) {
            COMPLETED.incrementAndGet();
        }
    }

    /** The word of record {@code i}, as bench_state makes it. */
    static final class Word implements MapFunction<Long, Tuple2<String, Long>> {
        private final long keys;
        private final double skew;

        Word(long keys, double skew) {
            this.keys = keys;
            this.skew = skew;
        }

        @Override
        public Tuple2<String, Long> map(Long i) {
            long rank = skew > 0 && i >= keys ? zipfRank(firstBits(i), keys, skew) : i;
            return Tuple2.of("key-" + Long.remainderUnsigned(rank * 0x9E3779B97F4A7C15L, keys), 1L);
        }
    }

    /**
     * The first output of Sluice's datagen generator for record {@code i}
     * (SplitMix64 for stream {@code i} of seed 0, which skips one output).
     */
    static long firstBits(long i) {
        long state = i * 0xD1B54A32D192ED03L;
        state += 0x9E3779B97F4A7C15L;
        state += 0x9E3779B97F4A7C15L;
        long z = state;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    /** bench_state's Zipf rank in {@code 0..n} with exponent {@code s} from 64 random bits. */
    static long zipfRank(long bits, long n, double s) {
        double u = (bits >>> 11) / (double) (1L << 53);
        double x = Math.abs(s - 1.0) < 1e-9
                ? Math.pow(n, u)
                : Math.pow((Math.pow(n, 1.0 - s) - 1.0) * u + 1.0, 1.0 / (1.0 - s));
        return Math.min(Math.max((long) x - 1, 0), n - 1);
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 5) {
            System.err.println("usage: FlinkStateBench hashmap|rocksdb off|INTERVAL KEYS RECORDS SKEW [key=value ...]");
            System.exit(2);
        }
        String backend = args[0];
        String interval = args[1];
        long keys = Long.parseLong(args[2]);
        long records = Long.parseLong(args[3]);
        double skew = Double.parseDouble(args[4]);
        Path dir = Files.createTempDirectory("flink-state-bench");
        Map<String, String> settings = new HashMap<>();
        settings.put("state.backend.type", backend);
        settings.put("execution.checkpointing.dir", dir.resolve("chk").toUri().toString());
        settings.put("execution.checkpointing.incremental", "true");
        settings.put("state.backend.rocksdb.localdir", dir.resolve("db").toString());
        if (!interval.equals("off")) {
            settings.put("execution.checkpointing.interval", interval);
        }
        for (int a = 5; a < args.length; a++) {
            int eq = args[a].indexOf('=');
            if (eq < 0) {
                System.err.println("setting '" + args[a] + "' is not key=value");
                System.exit(2);
            }
            settings.put(args[a].substring(0, eq), args[a].substring(eq + 1));
        }
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment(Configuration.fromMap(settings));
        env.setParallelism(1);
        env.fromSequence(0, records - 1)
                .map(new Word(keys, skew))
                .keyBy(t -> t.f0)
                .sum(1)
                .map(new CountCheckpoints())
                .sinkTo(new DiscardingSink<>());
        long cpuBefore = cpuNanos();
        long started = System.nanoTime();
        JobExecutionResult result = env.execute("flink-state-bench");
        double secs = (System.nanoTime() - started) / 1e9;
        double cpu = (cpuNanos() - cpuBefore) / 1e9;
        // Records/s over the job's own runtime, which leaves out starting
        // the MiniCluster (Sluice's figure includes starting its own).
        double net = result.getNetRuntime() / 1e3;
        System.out.printf(
                "RESULT flink-%s checkpoints=%s %12.0f rec/s  %7.1f s  (%.1f s with the MiniCluster's start)  peak RSS %8.1f MiB  completed checkpoints %d  CPU %.1f s = %.2f us/record%n",
                backend, interval, records / net, net, secs, peakRssKb() / 1024.0, COMPLETED.get(), cpu,
                cpu * 1e6 / records);
        deleteTree(dir);
        System.exit(0);
    }

    /** This process's user + system CPU time, from /proc/self/stat. */
    static long cpuNanos() throws IOException {
        String stat = Files.readString(Path.of("/proc/self/stat"));
        String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
        long ticks = Long.parseLong(f[11]) + Long.parseLong(f[12]);
        return ticks * 10_000_000L; // USER_HZ is 100 on Linux
    }

    /** Peak resident set size in KiB (VmHWM). */
    static long peakRssKb() throws IOException {
        for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
            if (line.startsWith("VmHWM:")) {
                return Long.parseLong(line.replaceAll("[^0-9]", ""));
            }
        }
        return -1;
    }

    static void deleteTree(Path dir) throws IOException {
        try (var paths = Files.walk(dir)) {
            paths.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
    }
}

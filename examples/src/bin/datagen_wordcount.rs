//! Streaming WordCount over a user-defined generator source (the example of
//! a custom `Source`): running counts, printed like `socket_wordcount`.
//!
//! `cargo run --release -p sluice-examples --bin datagen_wordcount -- --seed 42 --rate 1000 --count 100000 -p 2`
//! (`--count` bounds the input; without it the job runs until stopped.)

use sluice::{ParameterTool, StreamExecutionEnvironment};
use sluice_examples::{run_main, running_word_counts, WordGenerator};

/// mimalloc frees records allocated on another subtask's thread cheaply.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    run_main(|| {
        let params = ParameterTool::from_env()?;
        let seed = params.get_u64_or("seed", 42)?;
        let rate = params.get("rate").map(|_| params.get_f64_or("rate", 0.0)).transpose()?;
        if rate.is_some_and(|r| r <= 0.0) {
            anyhow::bail!("bad value for parameter --rate: expected a positive number of records per second");
        }
        let count = params.get_u64_opt("count")?;
        let env = StreamExecutionEnvironment::from_params(&params)?;
        let words = env.add_source(WordGenerator::new(seed, rate, count)).name("Word Generator");
        running_word_counts(&words).print();
        env.execute("Datagen WordCount")?;
        Ok(())
    })
}

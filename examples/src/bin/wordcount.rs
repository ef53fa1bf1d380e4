//! Batch WordCount: each word's final count, once, as `word,count` lines.
//!
//! `cargo run --release -p sluice-examples --bin wordcount -- --input FILE [--output FILE] [-p N]`

use sluice::{ParameterTool, RuntimeExecutionMode, StreamExecutionEnvironment};
use sluice_examples::{run_main, tokenize};

/// mimalloc frees records allocated on another subtask's thread cheaply.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    run_main(|| {
        let params = ParameterTool::from_env()?;
        let input = params.get_required("input")?.to_string();
        let env = StreamExecutionEnvironment::from_params(&params)?;
        env.set_runtime_mode(RuntimeExecutionMode::Batch);
        let counts = env
            .read_text_file(&input)
            .flat_map(|line: String| tokenize(&line).into_iter().map(|w| (w, 1u64)))
            .key_by(|(word, _)| word.clone())
            .sum(|t: &mut (String, u64)| &mut t.1)
            .map(|(word, count)| format!("{word},{count}"));
        match params.get("output") {
            Some(path) => counts.write_as_text(path).set_parallelism(1),
            None => counts.print().set_parallelism(1),
        };
        env.execute("Batch WordCount")?;
        Ok(())
    })
}

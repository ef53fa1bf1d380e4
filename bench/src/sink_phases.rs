//! The Kafka sinks' per-phase times ([`sluice_connectors::kafka::phases`])
//! carried from a benchmark child to its parent, and the parent's table of
//! them: where the exactly-once sink spends the time the at-least-once sink
//! does not.
//!
//! A child prints one `PHASE name=<phase> secs=<total> count=<n>` line per
//! phase after its job; the parent parses them per run and prints, per
//! phase, the median over runs of the total seconds (summed over sink
//! subtasks) and of the count.

use sluice_connectors::kafka::phases::{self, Phase};

/// One phase's total in one run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunPhase {
    /// The phase's name ([`Phase::name`]).
    pub name: String,
    /// Seconds spent in it, summed over the run's sink subtasks.
    pub secs: f64,
    /// How often it ran.
    pub count: u64,
}

/// Prints this process's phase totals as `PHASE` lines (in a child).
pub fn print_phase_lines() {
    for t in phases::snapshot() {
        println!("PHASE name={} secs={} count={}", t.phase.name(), t.total.as_secs_f64(), t.count);
    }
}

/// The `PHASE` lines of a child's standard output.
pub fn parse_phase_lines(stdout: &str) -> Vec<RunPhase> {
    stdout
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("PHASE ")?;
            let field = |key: &str| {
                rest.split_whitespace().find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            };
            Some(RunPhase {
                name: field("name")?.to_string(),
                secs: field("secs")?.parse().ok()?,
                count: field("count")?.parse().ok()?,
            })
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Prints, for each of `rows` (a name and the phases of each of its runs),
/// the median total seconds and count of every phase: one line per phase,
/// one column per row.
pub fn print_phase_table(rows: &[(&str, Vec<Vec<RunPhase>>)]) {
    let rows: Vec<_> = rows.iter().filter(|(_, runs)| runs.iter().any(|r| !r.is_empty())).collect();
    if rows.is_empty() {
        return;
    }
    println!();
    println!(
        "Kafka sink phases: median over runs of the seconds spent, summed over the sink subtasks (count in brackets)"
    );
    print!("{:<20}", "phase");
    for (name, _) in &rows {
        print!(" {name:>30}");
    }
    println!();
    for p in Phase::ALL {
        let label = if p.is_background() { format!("{} (background)", p.name()) } else { p.name().to_string() };
        print!("{label:<20}");
        for (_, runs) in &rows {
            let of = |run: &Vec<RunPhase>| run.iter().find(|r| r.name == p.name()).cloned();
            let secs = median(runs.iter().filter_map(of).map(|r| r.secs).collect());
            let count = median(runs.iter().filter_map(of).map(|r| r.count as f64).collect());
            print!(" {:>30}", format!("{secs:.3} s ({count:.0})"));
        }
        println!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_lines_round_trip_and_other_lines_are_ignored() {
        let out = "RESULT seconds=1.5\nPHASE name=flush secs=0.25 count=4\nPHASE name=commit secs=0.5 count=3\n\
                   PHASE name=bad secs=x count=1\nnoise";
        let parsed = parse_phase_lines(out);
        assert_eq!(
            parsed,
            vec![
                RunPhase { name: "flush".into(), secs: 0.25, count: 4 },
                RunPhase { name: "commit".into(), secs: 0.5, count: 3 },
            ]
        );
    }

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(Vec::new()), 0.0);
    }
}

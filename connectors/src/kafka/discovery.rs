//! Which partitions the Kafka source reads, which subtask reads each, and
//! where a partition starts.
//!
//! A source subscribes to listed topics and/or a topic pattern (a regular
//! expression matched against whole topic names, like Flink's
//! `setTopicPattern`). The cluster's metadata is read when a subtask opens
//! and again at every partition discovery; each subtask keeps the partitions
//! [`owner`] gives it. A listed topic that does not exist is an error; a
//! pattern that matches nothing is not (the source waits for topics).
//! Metadata that cannot be read at open is an error (naming the brokers);
//! a later discovery that fails is logged and tried again at the next
//! interval while the assigned partitions are read on.
//!
//! A partition known when the job first starts begins at the configured
//! starting offsets. One found later (a new topic or new partitions), and,
//! after a restore, any partition the checkpoint does not name, begins at
//! the earliest offset, as in Flink, so none of its records is lost.

use super::KafkaError;
use regex::Regex;
use std::collections::BTreeMap;

/// A topic and one of its partitions.
pub(crate) type Tp = (String, i32);

/// The offset saved for a partition that starts at the earliest offset and
/// has had no record read yet (librdkafka's `RD_KAFKA_OFFSET_BEGINNING`).
/// Saved offsets below zero are taken as this.
pub(crate) const EARLIEST: i64 = -2;

/// What the source subscribes to: listed topics and/or a pattern.
#[derive(Debug, Clone, Default)]
pub(crate) struct Subscription {
    topics: Vec<String>,
    pattern: Option<TopicPattern>,
}

/// A regular expression matched against whole topic names.
#[derive(Debug, Clone)]
struct TopicPattern {
    /// As the user wrote it, for messages.
    text: String,
    /// Anchored at both ends.
    regex: Regex,
}

/// One topic of the cluster's metadata, as [`Subscription::select`] needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicInfo<'a> {
    /// The topic's name.
    pub name: &'a str,
    /// The topic's partition ids; `None` when the broker reported an error
    /// for the topic (e.g. it does not exist, or is still being created).
    pub partitions: Option<Vec<i32>>,
}

/// The partitions a subscription selects from the metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Selection {
    /// Sorted, each once.
    pub partitions: Vec<Tp>,
    /// How many topics the pattern matched (zero without a pattern).
    pub pattern_topics: usize,
}

impl Subscription {
    /// Subscribes to `topics`.
    pub fn new(topics: &[&str]) -> Self {
        Subscription { topics: topics.iter().map(|t| t.to_string()).collect(), pattern: None }
    }

    /// Also subscribes to every topic whose whole name matches `pattern`.
    pub fn set_pattern(&mut self, pattern: &str) -> Result<(), KafkaError> {
        let regex = Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|e| KafkaError::BadTopicPattern { pattern: pattern.into(), message: e.to_string() })?;
        self.pattern = Some(TopicPattern { text: pattern.into(), regex });
        Ok(())
    }

    /// The pattern as written, if there is one.
    pub fn pattern(&self) -> Option<&str> {
        self.pattern.as_ref().map(|p| p.text.as_str())
    }

    /// Whether neither a topic nor a pattern was given.
    pub fn is_empty(&self) -> bool {
        self.topics.is_empty() && self.pattern.is_none()
    }

    /// Whether the pattern takes `topic`: a whole-name match, never one of
    /// Kafka's internal topics (names starting with `__`).
    fn pattern_matches(&self, topic: &str) -> bool {
        !topic.starts_with("__") && self.pattern.as_ref().is_some_and(|p| p.regex.is_match(topic))
    }

    /// The partitions of the subscribed topics in `metadata`. A listed topic
    /// missing (or with an error) is [`KafkaError::MissingTopic`]; a matching
    /// topic with an error is left for the next discovery.
    pub fn select(&self, metadata: &[TopicInfo<'_>], bootstrap: &str) -> Result<Selection, KafkaError> {
        let mut partitions = Vec::new();
        for topic in &self.topics {
            match metadata.iter().find(|t| t.name == topic).and_then(|t| t.partitions.as_ref()) {
                Some(ps) if !ps.is_empty() => partitions.extend(ps.iter().map(|p| (topic.clone(), *p))),
                _ => return Err(KafkaError::MissingTopic { topic: topic.clone(), bootstrap: bootstrap.into() }),
            }
        }
        let mut pattern_topics = 0;
        for t in metadata.iter().filter(|t| self.pattern_matches(t.name)) {
            if let Some(ps) = &t.partitions {
                pattern_topics += 1;
                partitions.extend(ps.iter().map(|p| (t.name.to_string(), *p)));
            }
        }
        partitions.sort();
        partitions.dedup();
        Ok(Selection { partitions, pattern_topics })
    }
}

/// The subtask that reads partition `partition` of `topic`: Flink's
/// `KafkaTopicPartitionAssigner` (so one topic's partitions go round-robin
/// from a start that depends on the topic, and a partition's subtask never
/// changes while the parallelism stays, whatever other partitions appear).
pub(crate) fn owner(topic: &str, partition: i32, parallelism: u32) -> u32 {
    let parallelism = i64::from(parallelism.max(1));
    // Java's String.hashCode: over UTF-16 code units, wrapping.
    let hash = topic.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    let start = i64::from(hash.wrapping_mul(31) & 0x7FFF_FFFF) % parallelism;
    ((start + i64::from(partition.max(0))) % parallelism) as u32
}

/// Where an assigned partition starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// At this offset (restored from a checkpoint).
    At(i64),
    /// At the earliest offset still in the log.
    Earliest,
    /// Where the source's starting offsets say.
    Configured,
}

/// Where partition `tp` starts. After a restore (`restored` is the union of
/// the saved offsets) a partition the checkpoint names resumes there and any
/// other was created (or subscribed to) since: earliest. On a first run, a
/// partition found at open (`discovered` false) starts as configured and one
/// discovered while running at the earliest offset.
pub(crate) fn start_of(tp: &Tp, restored: Option<&BTreeMap<Tp, i64>>, discovered: bool) -> Start {
    match restored {
        Some(saved) => match saved.get(tp) {
            Some(&o) if o >= 0 => Start::At(o),
            _ => Start::Earliest,
        },
        None if discovered => Start::Earliest,
        None => Start::Configured,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn info(name: &str, partitions: Option<Vec<i32>>) -> TopicInfo<'_> {
        TopicInfo { name, partitions }
    }

    fn tps(list: &[(&str, i32)]) -> Vec<Tp> {
        list.iter().map(|(t, p)| (t.to_string(), *p)).collect()
    }

    #[test]
    fn a_pattern_matches_whole_names_only_and_never_internal_topics() {
        let mut s = Subscription::new(&[]);
        s.set_pattern("events-[a-z]+").unwrap();
        let md = [
            info("events-a", Some(vec![1, 0])),
            info("events-bb", Some(vec![0])),
            info("events-a-old", Some(vec![0])),
            info("my-events-a", Some(vec![0])),
            info("events-1", Some(vec![0])),
            info("events-new", None),
        ];
        let got = s.select(&md, "b").unwrap();
        assert_eq!(got.partitions, tps(&[("events-a", 0), ("events-a", 1), ("events-bb", 0)]));
        assert_eq!(got.pattern_topics, 2);

        let mut all = Subscription::new(&[]);
        all.set_pattern(".*").unwrap();
        let md = [info("__consumer_offsets", Some(vec![0])), info("__transaction_state", Some(vec![0]))];
        assert_eq!(all.select(&md, "b").unwrap(), Selection::default());
    }

    #[test]
    fn listed_topics_and_a_pattern_together_name_each_partition_once() {
        let mut s = Subscription::new(&["orders", "events-a"]);
        s.set_pattern("events-.*").unwrap();
        assert_eq!(s.pattern(), Some("events-.*"));
        let md = [info("events-a", Some(vec![0])), info("orders", Some(vec![0])), info("events-b", Some(vec![0]))];
        let got = s.select(&md, "b").unwrap();
        assert_eq!(got.partitions, tps(&[("events-a", 0), ("events-b", 0), ("orders", 0)]));
    }

    #[test]
    fn a_missing_listed_topic_is_an_error_and_an_unmatched_pattern_is_not() {
        let s = Subscription::new(&["orders"]);
        let e = s.select(&[info("orders", None)], "host:1").unwrap_err().to_string();
        assert!(e.contains("'orders' does not exist on host:1"), "{e}");
        assert!(s.select(&[], "host:1").is_err());

        let mut p = Subscription::new(&[]);
        p.set_pattern("nothing-.*").unwrap();
        assert_eq!(p.select(&[info("orders", Some(vec![0]))], "b").unwrap(), Selection::default());
        assert!(Subscription::new(&[]).is_empty() && !p.is_empty());
    }

    #[test]
    fn a_bad_pattern_is_an_error_naming_it() {
        let e = Subscription::new(&[]).set_pattern("(unclosed").unwrap_err().to_string();
        assert!(e.contains("bad Kafka topic pattern '(unclosed'"), "{e}");
    }

    #[test]
    fn the_assigner_is_flinks() {
        // Flink: start = ((topic.hashCode() * 31) & 0x7FFFFFFF) % parallelism.
        // "a".hashCode() = 97, 97 * 31 = 3007; 3007 % 4 = 3.
        assert_eq!((0..4).map(|p| owner("a", p, 4)).collect::<Vec<_>>(), [3, 0, 1, 2]);
        assert_eq!(owner("anything", 7, 1), 0);
        // Every partition has exactly one owner in range.
        assert!((0..64).all(|p| owner("events-x", p, 3) < 3));
    }

    #[test]
    fn partitions_found_later_or_unknown_to_a_checkpoint_start_at_earliest() {
        let tp = ("t".to_string(), 0);
        assert_eq!(start_of(&tp, None, false), Start::Configured);
        assert_eq!(start_of(&tp, None, true), Start::Earliest);
        let mut saved = BTreeMap::new();
        assert_eq!(start_of(&tp, Some(&saved), false), Start::Earliest);
        saved.insert(tp.clone(), EARLIEST);
        assert_eq!(start_of(&tp, Some(&saved), false), Start::Earliest);
        saved.insert(tp.clone(), 42);
        assert_eq!(start_of(&tp, Some(&saved), true), Start::At(42));
    }
}

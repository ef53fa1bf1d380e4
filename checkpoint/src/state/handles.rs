//! The keyed state a user function works with: value, list, map, reducing
//! and aggregating state, each scoped to the key of the record (or timer)
//! being processed.
//!
//! A handle is registered once (in `open`) and then used for every record;
//! it reads and writes the entry of the current key. Handles share their
//! operator's store, so they are cheap to clone.
//!
//! ```
//! use sluice_checkpoint::state::{KeyedStateStore, ListState, SharedStore, StateBackendConfig, ValueState};
//! use sluice_checkpoint::KeyGroupRange;
//! let store = SharedStore::new(KeyedStateStore::new("op", &StateBackendConfig::default(), 128, KeyGroupRange { start: 0, end: 127 }).unwrap());
//! let seen: ValueState<u64> = ValueState::register(&store, "seen", None).unwrap();
//! let words: ListState<String> = ListState::register(&store, "words", None).unwrap();
//! store.set_current_key(&7u32).unwrap();
//! seen.update(3).unwrap();
//! words.add("a".to_string()).unwrap();
//! assert_eq!(seen.value().unwrap(), Some(3));
//! store.set_current_key(&8u32).unwrap();
//! assert_eq!(seen.value().unwrap(), None);
//! assert!(words.get().unwrap().is_empty());
//! ```

use crate::error::{Error, Result};
use crate::state::store::{KeyedStateStore, StateId};
use crate::state::table::StateValue;
use crate::state::ttl::StateTtlConfig;
use serde::Serialize;
use std::collections::BTreeMap;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};

/// An operator's keyed state, shared by the operator and the handles of its
/// user function (all on the subtask's one thread).
#[derive(Debug, Clone)]
pub struct SharedStore(Arc<Mutex<KeyedStateStore>>);

impl SharedStore {
    /// Wraps a store.
    pub fn new(store: KeyedStateStore) -> Self {
        SharedStore(Arc::new(Mutex::new(store)))
    }

    /// Locks the store for a series of calls.
    pub fn lock(&self) -> Result<MutexGuard<'_, KeyedStateStore>> {
        self.0.lock().map_err(|_| Error::State {
            state: "*".into(),
            message: "the state store is unusable after a panic in user code".into(),
        })
    }

    /// Makes `key` the current key.
    pub fn set_current_key<K: Serialize + Hash + ?Sized>(&self, key: &K) -> Result<()> {
        self.lock()?.set_current_key(key)
    }
}

/// A single value per key (Flink's `ValueState`).
#[derive(Debug)]
pub struct ValueState<T> {
    store: SharedStore,
    id: StateId,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for ValueState<T> {
    fn clone(&self) -> Self {
        ValueState { store: self.store.clone(), id: self.id, _t: PhantomData }
    }
}

impl<T: StateValue> ValueState<T> {
    /// Registers the state `name` in `store`.
    pub fn register(store: &SharedStore, name: &str, ttl: Option<StateTtlConfig>) -> Result<Self> {
        let id = store.lock()?.register::<T>(name, ttl)?;
        Ok(ValueState { store: store.clone(), id, _t: PhantomData })
    }
    /// The current key's value.
    pub fn value(&self) -> Result<Option<T>> {
        self.store.lock()?.get(self.id)
    }
    /// Sets the current key's value.
    pub fn update(&self, value: T) -> Result<()> {
        self.store.lock()?.update(self.id, |v| *v = Some(value))
    }
    /// Removes the current key's value.
    pub fn clear(&self) -> Result<()> {
        self.store.lock()?.clear::<T>(self.id)
    }
}

/// A list of values per key (Flink's `ListState`).
#[derive(Debug)]
pub struct ListState<T> {
    store: SharedStore,
    id: StateId,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for ListState<T> {
    fn clone(&self) -> Self {
        ListState { store: self.store.clone(), id: self.id, _t: PhantomData }
    }
}

impl<T: StateValue> ListState<T> {
    /// Registers the state `name` in `store`.
    pub fn register(store: &SharedStore, name: &str, ttl: Option<StateTtlConfig>) -> Result<Self> {
        let id = store.lock()?.register::<Vec<T>>(name, ttl)?;
        Ok(ListState { store: store.clone(), id, _t: PhantomData })
    }
    /// The current key's list (empty if none).
    pub fn get(&self) -> Result<Vec<T>> {
        Ok(self.store.lock()?.get::<Vec<T>>(self.id)?.unwrap_or_default())
    }
    /// Appends a value.
    pub fn add(&self, value: T) -> Result<()> {
        self.store.lock()?.update::<Vec<T>, ()>(self.id, |v| v.get_or_insert_with(Vec::new).push(value))
    }
    /// Appends values.
    pub fn add_all(&self, values: impl IntoIterator<Item = T>) -> Result<()> {
        self.store.lock()?.update::<Vec<T>, ()>(self.id, |v| v.get_or_insert_with(Vec::new).extend(values))
    }
    /// Replaces the list.
    pub fn update(&self, values: Vec<T>) -> Result<()> {
        self.store.lock()?.update::<Vec<T>, ()>(self.id, |v| *v = if values.is_empty() { None } else { Some(values) })
    }
    /// Removes the list.
    pub fn clear(&self) -> Result<()> {
        self.store.lock()?.clear::<Vec<T>>(self.id)
    }
}

/// A map per key (Flink's `MapState`). Stored as one value per key, so it
/// suits maps of moderate size.
#[derive(Debug)]
pub struct MapState<K, V> {
    store: SharedStore,
    id: StateId,
    _t: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for MapState<K, V> {
    fn clone(&self) -> Self {
        MapState { store: self.store.clone(), id: self.id, _t: PhantomData }
    }
}

impl<K: StateValue + Ord, V: StateValue> MapState<K, V> {
    /// Registers the state `name` in `store`.
    pub fn register(store: &SharedStore, name: &str, ttl: Option<StateTtlConfig>) -> Result<Self> {
        let id = store.lock()?.register::<BTreeMap<K, V>>(name, ttl)?;
        Ok(MapState { store: store.clone(), id, _t: PhantomData })
    }
    /// The value under `key` in the current key's map.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        self.store.lock()?.read::<BTreeMap<K, V>, _>(self.id, |m| m.and_then(|m| m.get(key).cloned()))
    }
    /// Puts `key` → `value`.
    pub fn put(&self, key: K, value: V) -> Result<()> {
        self.store.lock()?.update::<BTreeMap<K, V>, ()>(self.id, |m| {
            m.get_or_insert_with(BTreeMap::new).insert(key, value);
        })
    }
    /// Removes `key`.
    pub fn remove(&self, key: &K) -> Result<()> {
        self.store.lock()?.update::<BTreeMap<K, V>, ()>(self.id, |m| {
            if let Some(map) = m {
                map.remove(key);
                if map.is_empty() {
                    *m = None;
                }
            }
        })
    }
    /// Whether `key` is present.
    pub fn contains(&self, key: &K) -> Result<bool> {
        Ok(self.get(key)?.is_some())
    }
    /// All entries, ordered by key.
    pub fn entries(&self) -> Result<Vec<(K, V)>> {
        Ok(self.store.lock()?.get::<BTreeMap<K, V>>(self.id)?.map(|m| m.into_iter().collect()).unwrap_or_default())
    }
    /// Whether the current key's map is empty.
    pub fn is_empty(&self) -> Result<bool> {
        self.store.lock()?.read::<BTreeMap<K, V>, _>(self.id, |m| m.is_none_or(|m| m.is_empty()))
    }
    /// Removes the whole map.
    pub fn clear(&self) -> Result<()> {
        self.store.lock()?.clear::<BTreeMap<K, V>>(self.id)
    }
}

/// The reduce function of a [`ReducingState`].
pub type ReduceFn<T> = Arc<dyn Fn(T, T) -> T + Send + Sync>;

/// One value per key that every `add` folds in with a reduce function
/// (Flink's `ReducingState`).
pub struct ReducingState<T> {
    store: SharedStore,
    id: StateId,
    reduce: ReduceFn<T>,
}

impl<T> Clone for ReducingState<T> {
    fn clone(&self) -> Self {
        ReducingState { store: self.store.clone(), id: self.id, reduce: Arc::clone(&self.reduce) }
    }
}

impl<T> std::fmt::Debug for ReducingState<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReducingState").field("id", &self.id).finish_non_exhaustive()
    }
}

impl<T: StateValue> ReducingState<T> {
    /// Registers the state `name` in `store`.
    pub fn register(
        store: &SharedStore,
        name: &str,
        reduce: impl Fn(T, T) -> T + Send + Sync + 'static,
        ttl: Option<StateTtlConfig>,
    ) -> Result<Self> {
        let id = store.lock()?.register::<T>(name, ttl)?;
        Ok(ReducingState { store: store.clone(), id, reduce: Arc::new(reduce) })
    }
    /// The current key's reduced value.
    pub fn get(&self) -> Result<Option<T>> {
        self.store.lock()?.get(self.id)
    }
    /// Folds `value` in.
    pub fn add(&self, value: T) -> Result<()> {
        let reduce = &self.reduce;
        self.store.lock()?.update::<T, ()>(self.id, |v| {
            *v = Some(match v.take() {
                Some(acc) => reduce(acc, value),
                None => value,
            })
        })
    }
    /// Removes the value.
    pub fn clear(&self) -> Result<()> {
        self.store.lock()?.clear::<T>(self.id)
    }
}

/// An incremental aggregation: inputs are added to an accumulator, which
/// yields a result (Flink's `AggregateFunction`).
///
/// ```
/// use sluice_checkpoint::state::AggregateFunction;
/// /// The average of the inputs.
/// struct Average;
/// impl AggregateFunction<f64, (f64, u64), f64> for Average {
///     fn create_accumulator(&self) -> (f64, u64) { (0.0, 0) }
///     fn add(&self, v: f64, acc: &mut (f64, u64)) { acc.0 += v; acc.1 += 1; }
///     fn get_result(&self, acc: &(f64, u64)) -> f64 { acc.0 / acc.1 as f64 }
///     fn merge(&self, a: (f64, u64), b: (f64, u64)) -> (f64, u64) { (a.0 + b.0, a.1 + b.1) }
/// }
/// ```
pub trait AggregateFunction<IN, ACC, OUT>: Send + Sync + 'static {
    /// A new, empty accumulator.
    fn create_accumulator(&self) -> ACC;
    /// Adds one input.
    fn add(&self, value: IN, acc: &mut ACC);
    /// The result of an accumulator.
    fn get_result(&self, acc: &ACC) -> OUT;
    /// Merges two accumulators (session windows merge).
    fn merge(&self, a: ACC, b: ACC) -> ACC;
}

/// One accumulator per key that inputs are added to (Flink's
/// `AggregatingState`).
pub struct AggregatingState<IN, ACC, OUT> {
    store: SharedStore,
    id: StateId,
    function: Arc<dyn AggregateFunction<IN, ACC, OUT>>,
}

impl<IN, ACC, OUT> Clone for AggregatingState<IN, ACC, OUT> {
    fn clone(&self) -> Self {
        AggregatingState { store: self.store.clone(), id: self.id, function: Arc::clone(&self.function) }
    }
}

impl<IN, ACC, OUT> std::fmt::Debug for AggregatingState<IN, ACC, OUT> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregatingState").field("id", &self.id).finish_non_exhaustive()
    }
}

impl<IN: 'static, ACC: StateValue, OUT: 'static> AggregatingState<IN, ACC, OUT> {
    /// Registers the state `name` in `store`.
    pub fn register(
        store: &SharedStore,
        name: &str,
        function: Arc<dyn AggregateFunction<IN, ACC, OUT>>,
        ttl: Option<StateTtlConfig>,
    ) -> Result<Self> {
        let id = store.lock()?.register::<ACC>(name, ttl)?;
        Ok(AggregatingState { store: store.clone(), id, function })
    }
    /// The current key's result, if anything was added.
    pub fn get(&self) -> Result<Option<OUT>> {
        Ok(self.store.lock()?.get::<ACC>(self.id)?.map(|acc| self.function.get_result(&acc)))
    }
    /// Adds one input.
    pub fn add(&self, value: IN) -> Result<()> {
        let f = &self.function;
        self.store
            .lock()?
            .update::<ACC, ()>(self.id, |acc| f.add(value, acc.get_or_insert_with(|| f.create_accumulator())))
    }
    /// Removes the accumulator.
    pub fn clear(&self) -> Result<()> {
        self.store.lock()?.clear::<ACC>(self.id)
    }
}

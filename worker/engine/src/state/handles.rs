//! The typed handles user functions read and write keyed state with (`ValueState`,
//! `ListState`, `MapState`, `ReducingState`), scoped to the current key by
//! [`KeyedStateAccess`].

use super::{KeyedStateBackend, StateDescriptor, StateValue};
use std::marker::PhantomData;
use std::sync::Arc;

/// Gives typed state handles access to the backend with the current key in scope.
/// Implemented by the contexts passed to keyed user functions.
pub trait KeyedStateAccess {
    /// The backend, with the current key set.
    fn backend(&mut self) -> &mut KeyedStateBackend;
}

impl KeyedStateAccess for KeyedStateBackend {
    fn backend(&mut self) -> &mut KeyedStateBackend {
        self
    }
}

const UNBOUND: usize = usize::MAX;

fn bound(id: usize) -> usize {
    assert!(
        id != UNBOUND,
        "state handle used before it was registered in open()"
    );
    id
}

macro_rules! handle {
    ($(#[$m:meta])* $name:ident < $($g:ident),* >) => {
        $(#[$m])*
        pub struct $name<$($g),*> {
            id: usize,
            _p: PhantomData<fn() -> ($($g,)*)>,
        }
        impl<$($g),*> Default for $name<$($g),*> {
            fn default() -> Self {
                $name { id: UNBOUND, _p: PhantomData }
            }
        }
        impl<$($g),*> Clone for $name<$($g),*> {
            fn clone(&self) -> Self {
                $name { id: self.id, _p: PhantomData }
            }
        }
        impl<$($g),*> std::fmt::Debug for $name<$($g),*> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}#{}", stringify!($name), self.id)
            }
        }
    };
}

handle!(
    /// A single value per key. Register it in `open()` with `ctx.value_state(..)`.
    ValueState<T>
);
handle!(
    /// A list of values per key.
    ListState<T>
);
handle!(
    /// A map per key.
    MapState<K, V>
);

impl<T: StateValue> ValueState<T> {
    pub(crate) fn register(backend: &mut KeyedStateBackend, desc: &StateDescriptor) -> Self {
        ValueState {
            id: backend.register::<T>(desc),
            _p: PhantomData,
        }
    }

    /// The value for the current key, or `None` when unset or expired.
    pub fn value(&self, ctx: &mut impl KeyedStateAccess) -> Option<T> {
        ctx.backend().get(bound(self.id), &[])
    }

    /// Sets the value for the current key.
    pub fn update(&self, ctx: &mut impl KeyedStateAccess, value: T) {
        ctx.backend().put(bound(self.id), &[], value)
    }

    /// Removes the value for the current key.
    pub fn clear(&self, ctx: &mut impl KeyedStateAccess) {
        ctx.backend().remove::<T>(bound(self.id), &[]);
    }

    /// Changes the current key's value in place, first setting it to `init()` when unset.
    /// With the `hashmap` backend the value is never copied, so a large value (a buffer of
    /// rows) costs only what `f` does with it; `rocksdb` reads and writes it back whole.
    pub fn update_with<R>(
        &self,
        ctx: &mut impl KeyedStateAccess,
        init: impl FnOnce() -> T,
        f: impl FnOnce(&mut T) -> R,
    ) -> R {
        ctx.backend().update_with(bound(self.id), &[], init, f).0
    }

    /// Changes the current key's value in place; `None`, without calling `f`, when unset.
    pub fn mutate<R>(
        &self,
        ctx: &mut impl KeyedStateAccess,
        f: impl FnOnce(&mut T) -> R,
    ) -> Option<R> {
        ctx.backend().mutate(bound(self.id), &[], |v| (f(v), true))
    }

    /// As [`mutate`](Self::mutate), then clears the value when `f` returns `false` beside
    /// its result (a buffer `f` emptied): one lookup where `mutate` and `clear` take two.
    pub fn mutate_or_clear<R>(
        &self,
        ctx: &mut impl KeyedStateAccess,
        f: impl FnOnce(&mut T) -> (R, bool),
    ) -> Option<R> {
        ctx.backend().mutate(bound(self.id), &[], f)
    }
}

impl<T: StateValue> ListState<T> {
    pub(crate) fn register(backend: &mut KeyedStateBackend, desc: &StateDescriptor) -> Self {
        ListState {
            id: backend.register::<Vec<T>>(desc),
            _p: PhantomData,
        }
    }

    /// The list for the current key (empty when unset).
    pub fn get(&self, ctx: &mut impl KeyedStateAccess) -> Vec<T> {
        ctx.backend()
            .get::<Vec<T>>(bound(self.id), &[])
            .unwrap_or_default()
    }

    /// Appends a value; returns whether it is the list's first (the list was unset).
    pub fn add(&self, ctx: &mut impl KeyedStateAccess, value: T) -> bool {
        ctx.backend()
            .update_with(bound(self.id), &[], Vec::new, |l| l.push(value))
            .1
    }

    /// Replaces the whole list.
    pub fn update(&self, ctx: &mut impl KeyedStateAccess, values: Vec<T>) {
        ctx.backend().put(bound(self.id), &[], values)
    }

    /// Removes the list.
    pub fn clear(&self, ctx: &mut impl KeyedStateAccess) {
        ctx.backend().remove::<Vec<T>>(bound(self.id), &[]);
    }

    /// Removes the list and returns it (empty when unset): [`get`](Self::get) then
    /// [`clear`](Self::clear) without copying the values.
    pub fn take(&self, ctx: &mut impl KeyedStateAccess) -> Vec<T> {
        ctx.backend()
            .remove::<Vec<T>>(bound(self.id), &[])
            .unwrap_or_default()
    }
}

impl<K: crate::keygroup::Key, V: StateValue> MapState<K, V> {
    pub(crate) fn register(backend: &mut KeyedStateBackend, desc: &StateDescriptor) -> Self {
        MapState {
            id: backend.register::<std::collections::HashMap<K, V>>(desc),
            _p: PhantomData,
        }
    }

    /// The value under `key` in the current key's map.
    pub fn get(&self, ctx: &mut impl KeyedStateAccess, key: &K) -> Option<V> {
        // Clone only the requested entry rather than the whole map.
        ctx.backend()
            .update_with(
                bound(self.id),
                &[],
                std::collections::HashMap::<K, V>::new,
                |m| m.get(key).cloned(),
            )
            .0
    }

    /// Inserts or replaces `key` → `value`.
    pub fn put(&self, ctx: &mut impl KeyedStateAccess, key: K, value: V) {
        ctx.backend()
            .update_with(bound(self.id), &[], std::collections::HashMap::new, |m| {
                m.insert(key, value);
            });
    }

    /// Removes `key` from the current key's map.
    pub fn remove(&self, ctx: &mut impl KeyedStateAccess, key: &K) {
        ctx.backend().update_with(
            bound(self.id),
            &[],
            std::collections::HashMap::<K, V>::new,
            |m| {
                m.remove(key);
            },
        );
    }

    /// All entries of the current key's map, sorted by nothing in particular.
    pub fn entries(&self, ctx: &mut impl KeyedStateAccess) -> Vec<(K, V)> {
        ctx.backend()
            .get::<std::collections::HashMap<K, V>>(bound(self.id), &[])
            .map(|m| m.into_iter().collect())
            .unwrap_or_default()
    }

    /// Removes the whole map.
    pub fn clear(&self, ctx: &mut impl KeyedStateAccess) {
        ctx.backend()
            .remove::<std::collections::HashMap<K, V>>(bound(self.id), &[]);
    }
}

type ReduceFn<T> = Arc<dyn Fn(&T, &T) -> T + Send + Sync>;

/// A value per key that folds every added value in with a reduce function.
pub struct ReducingState<T> {
    id: usize,
    reduce: Option<ReduceFn<T>>,
}

impl<T> Default for ReducingState<T> {
    fn default() -> Self {
        ReducingState {
            id: UNBOUND,
            reduce: None,
        }
    }
}

impl<T> std::fmt::Debug for ReducingState<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReducingState#{}", self.id)
    }
}

impl<T: StateValue> ReducingState<T> {
    pub(crate) fn register(
        backend: &mut KeyedStateBackend,
        desc: &StateDescriptor,
        reduce: ReduceFn<T>,
    ) -> Self {
        ReducingState {
            id: backend.register::<T>(desc),
            reduce: Some(reduce),
        }
    }

    /// The reduced value for the current key.
    pub fn get(&self, ctx: &mut impl KeyedStateAccess) -> Option<T> {
        ctx.backend().get(bound(self.id), &[])
    }

    /// Folds `value` into the current key's value.
    pub fn add(&self, ctx: &mut impl KeyedStateAccess, value: T) {
        let reduce = self.reduce.as_ref().expect("registered");
        let backend = ctx.backend();
        let next = match backend.get::<T>(bound(self.id), &[]) {
            Some(cur) => reduce(&cur, &value),
            None => value,
        };
        backend.put(self.id, &[], next);
    }

    /// Removes the current key's value.
    pub fn clear(&self, ctx: &mut impl KeyedStateAccess) {
        ctx.backend().remove::<T>(bound(self.id), &[]);
    }
}

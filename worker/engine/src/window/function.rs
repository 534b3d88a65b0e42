//! Window functions: how a window's contents become output (aggregate, reduce, process).

use super::{AggregateFunction, TimeWindow, Windowed};
use crate::api::{Collector, Data};
use crate::error::Result;
use crate::keygroup::Key;
use crate::state::StateValue;
use std::marker::PhantomData;
use std::sync::Arc;

/// How a window's contents become output: the shared core of aggregate, reduce and process.
pub(super) trait WindowFunction<K, T>: Send + Sync + 'static {
    type Acc: StateValue;
    type Out: Data;
    /// Whether sliding and cumulating windows may keep one accumulator per slice and merge
    /// a window's slices when it fires. `reduce` and `process` may not: merging hands a
    /// reduce function partial results (which needs it associative and commutative) and a
    /// process function its records grouped by slice instead of in arrival order.
    const SLICEABLE: bool = false;
    fn create(&self) -> Self::Acc;
    fn add(&self, acc: &mut Self::Acc, value: &T);
    fn merge(&self, other: Self::Acc, acc: &mut Self::Acc);
    /// [`merge`](Self::merge) from a borrowed accumulator (the default merges a clone).
    fn merge_ref(&self, other: &Self::Acc, acc: &mut Self::Acc) {
        self.merge(other.clone(), acc)
    }
    /// Emits the result of `acc`; `key` is the window's key, decoded for this call.
    fn emit(
        &self,
        key: K,
        window: &TimeWindow,
        acc: &Self::Acc,
        out: &mut Collector<Self::Out>,
    ) -> Result<()>;
}

/// An aggregate with the function that turns a window's result into output (for plain
/// `aggregate`: a [`Windowed`]).
pub(super) struct AggWindow<A, E, O> {
    pub(super) agg: A,
    pub(super) emit: E,
    pub(super) _out: PhantomData<fn() -> O>,
}

impl<K, T, A, E, O> WindowFunction<K, T> for AggWindow<A, E, O>
where
    K: Key,
    A: AggregateFunction<T>,
    O: Data,
    E: Fn(K, &TimeWindow, A::Out, &mut Collector<O>) -> Result<()> + Send + Sync + 'static,
{
    type Acc = A::Acc;
    type Out = O;
    const SLICEABLE: bool = true;
    fn create(&self) -> A::Acc {
        self.agg.create_accumulator()
    }
    fn add(&self, acc: &mut A::Acc, value: &T) {
        self.agg.add(value, acc)
    }
    fn merge(&self, other: A::Acc, acc: &mut A::Acc) {
        self.agg.merge(other, acc)
    }
    fn merge_ref(&self, other: &A::Acc, acc: &mut A::Acc) {
        self.agg.merge_ref(other, acc)
    }
    fn emit(
        &self,
        key: K,
        window: &TimeWindow,
        acc: &A::Acc,
        out: &mut Collector<O>,
    ) -> Result<()> {
        (self.emit)(key, window, self.agg.get_result(acc), out)
    }
}

pub(super) type ReduceFn<T> = Arc<dyn Fn(&T, &T) -> T + Send + Sync>;
pub(super) struct ReduceWindow<T>(pub(super) ReduceFn<T>);

impl<K: Key, T: StateValue> WindowFunction<K, T> for ReduceWindow<T> {
    type Acc = Option<T>;
    type Out = Windowed<K, T>;
    fn create(&self) -> Option<T> {
        None
    }
    fn add(&self, acc: &mut Option<T>, value: &T) {
        *acc = Some(match acc.take() {
            Some(a) => (self.0)(&a, value),
            None => value.clone(),
        });
    }
    fn merge(&self, other: Option<T>, acc: &mut Option<T>) {
        if let Some(o) = other {
            <Self as WindowFunction<K, T>>::add(self, acc, &o);
        }
    }
    fn emit(
        &self,
        key: K,
        window: &TimeWindow,
        acc: &Option<T>,
        out: &mut Collector<Self::Out>,
    ) -> Result<()> {
        if let Some(v) = acc {
            out.collect(Windowed {
                key,
                window: *window,
                value: v.clone(),
            });
        }
        Ok(())
    }
}

pub(super) type ProcessWindowFn<K, T, O> =
    Arc<dyn Fn(&K, &TimeWindow, &[T], &mut Collector<O>) -> Result<()> + Send + Sync>;
pub(super) struct ProcessWindow<K, T, O>(pub(super) ProcessWindowFn<K, T, O>);

impl<K: Key, T: StateValue, O: Data> WindowFunction<K, T> for ProcessWindow<K, T, O> {
    type Acc = Vec<T>;
    type Out = O;
    fn create(&self) -> Vec<T> {
        Vec::new()
    }
    fn add(&self, acc: &mut Vec<T>, value: &T) {
        acc.push(value.clone())
    }
    fn merge(&self, mut other: Vec<T>, acc: &mut Vec<T>) {
        acc.append(&mut other)
    }
    fn emit(
        &self,
        key: K,
        window: &TimeWindow,
        acc: &Vec<T>,
        out: &mut Collector<O>,
    ) -> Result<()> {
        (self.0)(&key, window, acc, out)
    }
}

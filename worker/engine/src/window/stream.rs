//! The builder: a keyed stream grouped into windows, finished with `aggregate`, `reduce`
//! or `process`.

use super::function::{AggWindow, ProcessWindow, ReduceWindow, WindowFunction};
use super::operator::WindowOperator;
use super::{AggregateFunction, TimeWindow, WindowSpec, Windowed};
use crate::api::DataStream;
use crate::api::{Collector, Data, KeyedStream, OutputTag};
use crate::error::{Error, Result};
use crate::keygroup::Key;
use crate::runtime::Operator;
use crate::state::StateValue;
use crate::time::duration_ms;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// A keyed stream grouped into windows; finish it with `aggregate`, `reduce` or `process`.
pub struct WindowedStream<K, T> {
    keyed: KeyedStream<K, T>,
    spec: WindowSpec,
    lateness_ms: i64,
    late_tag: Option<String>,
}

impl<K, T> std::fmt::Debug for WindowedStream<K, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WindowedStream({:?})", self.spec)
    }
}

impl<K: Key, T: Data> WindowedStream<K, T> {
    pub(crate) fn new(keyed: KeyedStream<K, T>, spec: WindowSpec) -> Self {
        WindowedStream {
            keyed,
            spec,
            lateness_ms: 0,
            late_tag: None,
        }
    }

    /// Keeps windows for `lateness` after they fire; late records re-fire them.
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.lateness_ms = duration_ms(lateness);
        self
    }

    /// Sends records too late for any window to side output `tag` (read it with
    /// `get_side_output` on the result) instead of dropping them.
    pub fn side_output_late_data(mut self, tag: &OutputTag<T>) -> Self {
        self.late_tag = Some(tag.id.clone());
        self
    }

    fn build<W: WindowFunction<K, T>>(self, name: &str, f: W) -> DataStream<W::Out> {
        let f = Arc::new(f);
        let (spec, lateness, late_tag) = (self.spec, self.lateness_ms, self.late_tag);
        let key_fn = self.keyed.key_fn.clone();
        let key_writer = self.keyed.key_writer.clone();
        let invalid = spec.validate().err().map(|e| e.to_string());
        self.keyed
            .stream
            .add_operator(name, self.keyed.partitioning(), move |info| {
                if let Some(msg) = &invalid {
                    return Err(Error::InvalidJob(
                        msg.trim_start_matches("invalid job: ").to_string(),
                    ));
                }
                Ok(Box::new(WindowOperator::new(
                    spec,
                    lateness,
                    late_tag.clone(),
                    f.clone(),
                    (key_fn.clone(), key_writer.clone()),
                    info.clone(),
                )) as Box<dyn Operator>)
            })
    }

    /// Aggregates each window incrementally; emits one `Windowed` result per key and window.
    pub fn aggregate<A: AggregateFunction<T>>(self, f: A) -> DataStream<Windowed<K, A::Out>> {
        self.aggregate_with(f, |key, window, value, out| {
            out.collect(Windowed {
                key,
                window: *window,
                value,
            });
            Ok(())
        })
    }

    /// Aggregates each window incrementally, then hands each window's key, bounds and result
    /// to `emit` (Flink's `aggregate(aggregateFunction, windowFunction)`): output in any
    /// shape, built once, without a [`Windowed`] in between. Records `emit` collects carry
    /// the window's last millisecond as their time unless it collects them with another.
    pub fn aggregate_with<A, O>(
        self,
        f: A,
        emit: impl Fn(K, &TimeWindow, A::Out, &mut Collector<O>) -> Result<()> + Send + Sync + 'static,
    ) -> DataStream<O>
    where
        A: AggregateFunction<T>,
        O: Data,
    {
        self.build(
            "Window(aggregate)",
            AggWindow {
                agg: f,
                emit,
                _out: PhantomData,
            },
        )
    }

    /// Reduces each window's records pairwise.
    pub fn reduce(
        self,
        f: impl Fn(&T, &T) -> T + Send + Sync + 'static,
    ) -> DataStream<Windowed<K, T>>
    where
        T: StateValue,
    {
        self.build("Window(reduce)", ReduceWindow(Arc::new(f)))
    }

    /// Calls `f` with all of a window's records when it fires.
    pub fn process<O: Data>(
        self,
        f: impl Fn(&K, &TimeWindow, &[T], &mut Collector<O>) -> Result<()> + Send + Sync + 'static,
    ) -> DataStream<O>
    where
        T: StateValue,
    {
        self.build("Window(process)", ProcessWindow(Arc::new(f)))
    }
}

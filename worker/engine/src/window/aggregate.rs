//! Aggregate functions: Flink's `AggregateFunction`, tuples of them side by side, and the
//! built-in ones ([`agg`]).

use crate::api::Data;
use crate::state::StateValue;

/// Incrementally aggregates records into an accumulator — Flink's `AggregateFunction`.
/// Tuples of aggregate functions aggregate side by side: `(count(), sum(f))`.
pub trait AggregateFunction<T>: Send + Sync + 'static {
    /// The running state; kept in keyed state per window.
    type Acc: StateValue;
    /// The result.
    type Out: Data;
    /// A fresh accumulator.
    fn create_accumulator(&self) -> Self::Acc;
    /// Folds one record in.
    fn add(&self, value: &T, acc: &mut Self::Acc);
    /// The result for an accumulator.
    fn get_result(&self, acc: &Self::Acc) -> Self::Out;
    /// Folds `other` into `acc`: session windows merge, and sliding and cumulating windows
    /// (without allowed lateness) keep one accumulator per slice and merge a window's slices,
    /// oldest first, when it fires. Merging the accumulators of two sets of records must give
    /// the accumulator of all of them.
    fn merge(&self, other: Self::Acc, acc: &mut Self::Acc);
    /// [`merge`](Self::merge) from a borrowed accumulator: sliced windows merge the slices
    /// that later windows still need this way. The default merges a clone of `other`.
    fn merge_ref(&self, other: &Self::Acc, acc: &mut Self::Acc) {
        self.merge(other.clone(), acc)
    }
}

/// Built-in aggregate functions.
pub mod agg {
    use super::AggregateFunction;
    use crate::state::StateValue;
    use std::marker::PhantomData;

    /// Numbers that can be summed, compared and averaged.
    pub trait Numeric:
        StateValue + Copy + PartialOrd + Default + std::ops::Add<Output = Self>
    {
        /// As a float, for averages.
        fn to_f64(self) -> f64;
    }
    macro_rules! numeric {
        ($($t:ty),*) => {$(impl Numeric for $t { fn to_f64(self) -> f64 { self as f64 } })*};
    }
    numeric!(i32, i64, u32, u64, f32, f64, usize);

    /// Counts records.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Count;
    /// `COUNT(*)`.
    pub fn count() -> Count {
        Count
    }
    impl<T> AggregateFunction<T> for Count {
        type Acc = u64;
        type Out = u64;
        fn create_accumulator(&self) -> u64 {
            0
        }
        fn add(&self, _: &T, acc: &mut u64) {
            *acc += 1;
        }
        fn get_result(&self, acc: &u64) -> u64 {
            *acc
        }
        fn merge(&self, other: u64, acc: &mut u64) {
            *acc += other;
        }
    }

    macro_rules! field_agg {
        ($(#[$m:meta])* $name:ident, $ctor:ident, $acc:ty, $out:ty, $init:expr, |$a:ident, $v:ident| $add:expr, |$r:ident| $res:expr, |$o:ident, $into:ident| $merge:expr) => {
            $(#[$m])*
            pub struct $name<F, N> { f: F, _p: PhantomData<fn() -> N> }
            $(#[$m])*
            pub fn $ctor<T, N: Numeric, F: Fn(&T) -> N + Send + Sync + 'static>(f: F) -> $name<F, N> {
                $name { f, _p: PhantomData }
            }
            impl<T, N: Numeric, F: Fn(&T) -> N + Send + Sync + 'static> AggregateFunction<T> for $name<F, N> {
                type Acc = $acc;
                type Out = $out;
                fn create_accumulator(&self) -> $acc { $init }
                fn add(&self, value: &T, $a: &mut $acc) { let $v = (self.f)(value); $add }
                fn get_result(&self, $r: &$acc) -> $out { $res }
                fn merge(&self, $o: $acc, $into: &mut $acc) { $merge }
            }
        };
    }

    field_agg!(
        /// `SUM(f(record))`.
        Sum, sum, N, N, N::default(), |a, v| *a = *a + v, |r| *r, |o, into| *into = *into + o
    );
    field_agg!(
        /// `MIN(f(record))`.
        Min, min, Option<N>, N, None,
        |a, v| *a = Some(match *a { Some(x) if x <= v => x, _ => v }),
        |r| r.unwrap_or_default(),
        |o, into| if let Some(v) = o { *into = Some(match *into { Some(x) if x <= v => x, _ => v }) }
    );
    field_agg!(
        /// `MAX(f(record))`.
        Max, max, Option<N>, N, None,
        |a, v| *a = Some(match *a { Some(x) if x >= v => x, _ => v }),
        |r| r.unwrap_or_default(),
        |o, into| if let Some(v) = o { *into = Some(match *into { Some(x) if x >= v => x, _ => v }) }
    );
    field_agg!(
        /// `AVG(f(record))` as a float.
        Avg, avg, (f64, u64), f64, (0.0, 0),
        |a, v| { a.0 += v.to_f64(); a.1 += 1 },
        |r| if r.1 == 0 { 0.0 } else { r.0 / r.1 as f64 },
        |o, into| { into.0 += o.0; into.1 += o.1 }
    );

    macro_rules! tuple_agg {
        ($($n:tt $a:ident),*) => {
            impl<T, $($a: AggregateFunction<T>),*> AggregateFunction<T> for ($($a,)*) {
                type Acc = ($($a::Acc,)*);
                type Out = ($($a::Out,)*);
                fn create_accumulator(&self) -> Self::Acc { ($(self.$n.create_accumulator(),)*) }
                fn add(&self, value: &T, acc: &mut Self::Acc) { $(self.$n.add(value, &mut acc.$n);)* }
                fn get_result(&self, acc: &Self::Acc) -> Self::Out { ($(self.$n.get_result(&acc.$n),)*) }
                fn merge(&self, other: Self::Acc, acc: &mut Self::Acc) { $(self.$n.merge(other.$n, &mut acc.$n);)* }
                fn merge_ref(&self, other: &Self::Acc, acc: &mut Self::Acc) { $(self.$n.merge_ref(&other.$n, &mut acc.$n);)* }
            }
        };
    }
    tuple_agg!(0 A, 1 B);
    tuple_agg!(0 A, 1 B, 2 C);
    tuple_agg!(0 A, 1 B, 2 C, 3 D);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregate_tuples_combine_and_merge() {
        use agg::*;
        let f = (
            count(),
            sum(|x: &i64| *x),
            min(|x: &i64| *x),
            avg(|x: &i64| *x),
        );
        let mut a = AggregateFunction::<i64>::create_accumulator(&f);
        for v in [4, -2, 10] {
            f.add(&v, &mut a);
        }
        let mut b = AggregateFunction::<i64>::create_accumulator(&f);
        f.add(&1, &mut b);
        f.merge(b, &mut a);
        assert_eq!(f.get_result(&a), (4, 13, -2, 3.25));
        let mx = max(|x: &f64| *x);
        let mut m = AggregateFunction::<f64>::create_accumulator(&mx);
        mx.add(&1.5, &mut m);
        mx.add(&-3.0, &mut m);
        assert_eq!(mx.get_result(&m), 1.5);
    }
}

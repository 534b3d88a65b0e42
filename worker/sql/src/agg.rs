//! SQL aggregates as one engine `AggregateFunction` over pre-projected rows, so window
//! state (one accumulator list per key and window) lives in the engine's keyed state.

use crate::value::{Row, SqlType, Value};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use weir_engine::runtime::Rec;
use weir_engine::time::{NO_TIMESTAMP, Timestamp};
use weir_engine::window::AggregateFunction;

/// Which aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggKind {
    /// COUNT(*) or COUNT(x)
    Count,
    /// SUM(x)
    Sum,
    /// AVG(x)
    Avg,
    /// MIN(x)
    Min,
    /// MAX(x)
    Max,
}

/// One aggregate call: where its argument and FILTER condition are in the input row.
#[derive(Debug, Clone)]
pub struct AggCall {
    /// The function.
    pub kind: AggKind,
    /// Column of the argument (`None` for `COUNT(*)`).
    pub arg: Option<usize>,
    /// Column of the FILTER (WHERE …) condition.
    pub filter: Option<usize>,
    /// `DISTINCT`.
    pub distinct: bool,
    /// Result type.
    pub ty: SqlType,
}

/// The running state of one aggregate call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Acc {
    /// Count of rows or non-null values.
    Count(i64),
    /// Sum (NULL until a non-null value arrives) and count of values.
    Sum(Option<Value>, i64),
    /// Minimum or maximum so far.
    Extreme(Option<Value>),
    /// Distinct values seen (for COUNT/MIN/MAX DISTINCT, and SUM/AVG DISTINCT accumulators
    /// stored before [`Acc::DistinctSum`] existed).
    Distinct(BTreeSet<Value>),
    /// Distinct values seen with the running sum and count of them (SUM/AVG DISTINCT): a
    /// new value is added once, so reading the result never re-folds the whole set.
    DistinctSum(BTreeSet<Value>, Option<Value>, i64),
}

/// All aggregate calls of one GROUP BY.
#[derive(Debug, Clone)]
pub struct SqlAggregate {
    /// The calls in SELECT order.
    pub calls: Vec<AggCall>,
}

impl SqlAggregate {
    /// What the accumulators of these calls, grouped by keys of `key_types`, hold: the state
    /// schema of the operator keeping them (`keys(BIGINT) aggs(COUNT, SUM BIGINT)`). A query
    /// whose aggregates or keys changed does not restore another's accumulators as its own.
    pub fn state_schema(&self, key_types: &[SqlType]) -> String {
        let calls: Vec<String> = self
            .calls
            .iter()
            .map(|c| {
                format!(
                    "{:?}{}{} {}",
                    c.kind,
                    if c.distinct { " DISTINCT" } else { "" },
                    if c.filter.is_some() { " FILTER" } else { "" },
                    state_name(c.ty)
                )
                .to_uppercase()
            })
            .collect();
        format!("keys({}) aggs({})", types_list(key_types), calls.join(", "))
    }
}

/// The name a type has in state schemas. Integers of every width are stored alike (as
/// `Value::Int`, a SUM's accumulator holding the 64-bit sum), and were all BIGINT before INT,
/// SMALLINT and TINYINT were types of their own: state written then restores unchanged.
fn state_name(t: SqlType) -> &'static str {
    if t.is_integer() {
        SqlType::BigInt.sql_name()
    } else {
        t.sql_name()
    }
}

/// `BIGINT, STRING`: the state schema of rows or keys of these types.
pub(crate) fn types_list(types: &[SqlType]) -> String {
    types
        .iter()
        .map(|&t| state_name(t))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Adds `v` to a running sum of `n` values (`avg`: of AVG, which sums FLOATs as DOUBLEs, as
/// Flink's accumulator does).
fn add_to_sum(s: &mut Option<Value>, n: &mut i64, v: &Value, avg: bool) {
    let widened;
    let v = match v {
        Value::Float(f) if avg => {
            widened = Value::Double(f64::from(*f));
            &widened
        }
        v => v,
    };
    *s = Some(match s.take() {
        None => v.clone(),
        Some(cur) => add_values(&cur, v),
    });
    *n += 1;
}

fn add_values(a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Value::Int(x.wrapping_add(*y)),
        // SUM of FLOAT adds in 32 bits, as Java's `float`.
        (Value::Float(x), Value::Float(y)) => Value::Float(x + y),
        // A DECIMAL sum is exact, at the values' scale, and NULL from the first overflow of
        // 38 digits on (as Flink's).
        (Value::Decimal(..) | Value::Null, _) | (_, Value::Decimal(..)) => {
            match (a.as_decimal(), b.as_decimal()) {
                (Some(x), Some(y)) => {
                    let s = x.1.max(y.1);
                    crate::decimal::Op::Add
                        .apply(x, y, (crate::decimal::MAX_PRECISION, s))
                        .ok()
                        .flatten()
                        .map_or(Value::Null, |v| Value::Decimal(v, s))
                }
                _ => Value::Null,
            }
        }
        _ => Value::Double(a.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0)),
    }
}

impl AggCall {
    fn fresh(&self) -> Acc {
        if self.distinct {
            return match self.kind {
                AggKind::Sum | AggKind::Avg => Acc::DistinctSum(BTreeSet::new(), None, 0),
                _ => Acc::Distinct(BTreeSet::new()),
            };
        }
        match self.kind {
            AggKind::Count => Acc::Count(0),
            AggKind::Sum | AggKind::Avg => Acc::Sum(None, 0),
            AggKind::Min | AggKind::Max => Acc::Extreme(None),
        }
    }

    fn fold(&self, acc: &mut Acc, v: Option<&Value>) {
        match (acc, v) {
            (Acc::Count(c), None) => *c += 1,
            (_, Some(Value::Null)) => {}
            (Acc::Count(c), Some(_)) => *c += 1,
            (Acc::Distinct(set), Some(v)) => {
                set.insert(v.clone());
            }
            (Acc::DistinctSum(set, s, n), Some(v)) if !set.contains(v) => {
                set.insert(v.clone());
                add_to_sum(s, n, v, self.kind == AggKind::Avg);
            }
            (Acc::Sum(s, n), Some(v)) => add_to_sum(s, n, v, self.kind == AggKind::Avg),
            (Acc::Extreme(cur), Some(v)) => {
                let replace = match cur {
                    None => true,
                    Some(c) if self.kind == AggKind::Min => v < c,
                    Some(c) => v > c,
                };
                if replace {
                    *cur = Some(v.clone());
                }
            }
            _ => {}
        }
    }

    /// Whether [`unfold`](Self::unfold) can take a value back out of this call's
    /// accumulator: COUNT, and SUM/AVG of integers or DOUBLE, without DISTINCT (MIN, MAX and
    /// DISTINCT would need every value kept).
    pub fn retractable(&self) -> bool {
        !self.distinct
            && match self.kind {
                AggKind::Count => true,
                AggKind::Sum | AggKind::Avg => self.ty.is_integer() || self.ty == SqlType::Double,
                AggKind::Min | AggKind::Max => false,
            }
    }

    /// Takes `v` (a retracted row's argument) back out of `acc`: the inverse of `fold`, for
    /// the calls that are [`retractable`](Self::retractable).
    fn unfold(&self, acc: &mut Acc, v: Option<&Value>) {
        match (acc, v) {
            (Acc::Count(c), None) => *c -= 1,
            (_, Some(Value::Null)) => {}
            (Acc::Count(c), Some(_)) => *c -= 1,
            (Acc::Sum(s, n), Some(v)) => {
                *n -= 1;
                *s = match (s.take(), v) {
                    _ if *n <= 0 => None,
                    (Some(Value::Int(x)), Value::Int(y)) => Some(Value::Int(x.wrapping_sub(*y))),
                    (Some(x), y) => Some(Value::Double(
                        x.as_f64().unwrap_or(0.0) - y.as_f64().unwrap_or(0.0),
                    )),
                    (None, _) => None,
                };
            }
            _ => {}
        }
    }

    fn result(&self, acc: &Acc) -> Value {
        match acc {
            Acc::Count(c) => Value::Int(*c),
            // Read off the set itself: an updating GROUP BY asks for the result after every
            // row, and folding the whole set each time made a group's cost quadratic.
            Acc::Distinct(set) if self.kind == AggKind::Count => Value::Int(set.len() as i64),
            Acc::Distinct(set) if self.kind == AggKind::Min => {
                set.first().cloned().unwrap_or(Value::Null)
            }
            Acc::Distinct(set) if self.kind == AggKind::Max => {
                set.last().cloned().unwrap_or(Value::Null)
            }
            Acc::DistinctSum(_, s, n) => self.sum_result(s, *n),
            Acc::Distinct(set) => {
                let mut a = AggCall {
                    distinct: false,
                    ..self.clone()
                }
                .fresh();
                for v in set {
                    self.fold_plain(&mut a, v);
                }
                self.result(&a)
            }
            Acc::Sum(s, n) => self.sum_result(s, *n),
            Acc::Extreme(v) => v.clone().unwrap_or(Value::Null),
        }
    }

    /// SUM or AVG of `n` values summing to `s`.
    fn sum_result(&self, s: &Option<Value>, n: i64) -> Value {
        let Some(s) = s else { return Value::Null };
        match self.kind {
            AggKind::Avg => match (s, self.ty) {
                // The sum divided by the count, rounded HALF_UP to the result's scale
                // (DECIMAL(38, max(6, s)), see `crate::decimal::avg_type`).
                (Value::Decimal(v, vs), SqlType::Decimal(p, rs)) => crate::decimal::Op::Div
                    .apply((*v, *vs), (i128::from(n.max(1)), 0), (p, rs))
                    .ok()
                    .flatten()
                    .map_or(Value::Null, |v| Value::Decimal(v, rs)),
                (Value::Null, _) => Value::Null,
                // Flink's AVG keeps the argument's type: integer averages truncate (of the
                // 64-bit sum, as Flink's accumulator is a BIGINT for every integer type).
                (Value::Int(x), t) if t.is_integer() => Value::Int(x / n.max(1)),
                // AVG of FLOAT: the DOUBLE sum's average, narrowed to FLOAT.
                (s, SqlType::Float) => {
                    Value::Float((s.as_f64().unwrap_or(0.0) / n.max(1) as f64) as f32)
                }
                _ => Value::Double(s.as_f64().unwrap_or(0.0) / n.max(1) as f64),
            },
            // SUM keeps the argument's type too, wrapping around as Java's `int` does: the
            // accumulator holds the 64-bit sum (so accumulators stored before INT was a type
            // read the same), and wrapping it once equals wrapping every addition.
            _ => match s {
                Value::Int(x) => Value::Int(self.ty.wrap(*x)),
                s => s.clone(),
            },
        }
    }

    fn fold_plain(&self, acc: &mut Acc, v: &Value) {
        let plain = AggCall {
            distinct: false,
            ..self.clone()
        };
        plain.fold(acc, Some(v));
    }

    /// Folds the accumulator `other` into `acc` (of the same call).
    fn merge_ref_into(&self, other: &Acc, acc: &mut Acc) {
        match (other, acc) {
            (Acc::Count(a), Acc::Count(b)) => *b += a,
            (Acc::Distinct(a), Acc::Distinct(b)) => b.extend(a.iter().cloned()),
            (Acc::DistinctSum(a, ..), Acc::DistinctSum(b, s, n)) => {
                for v in a {
                    if b.insert(v.clone()) {
                        add_to_sum(s, n, v, self.kind == AggKind::Avg);
                    }
                }
            }
            (Acc::Sum(a, n), Acc::Sum(b, m)) => {
                *b = match (a, b.take()) {
                    (None, x) => x,
                    (Some(x), None) => Some(x.clone()),
                    (Some(x), Some(y)) => Some(add_values(x, &y)),
                };
                *m += n;
            }
            (Acc::Extreme(Some(v)), acc @ Acc::Extreme(_)) => self.fold(acc, Some(v)),
            _ => {}
        }
    }

    fn merge_into(&self, other: Acc, acc: &mut Acc) {
        match (other, acc) {
            // Distinct values are moved, not copied.
            (Acc::Distinct(a), Acc::Distinct(b)) => b.extend(a),
            (other, acc) => self.merge_ref_into(&other, acc),
        }
    }
}

impl SqlAggregate {
    /// Takes a retracted row (`-U`, `-D`) back out of the accumulators; every call must be
    /// [`AggCall::retractable`].
    pub fn retract(&self, row: &Row, acc: &mut [Acc]) {
        for (call, a) in self.calls.iter().zip(acc.iter_mut()) {
            if let Some(f) = call.filter
                && !matches!(row.0.get(f), Some(Value::Bool(true)))
            {
                continue;
            }
            call.unfold(a, call.arg.and_then(|i| row.0.get(i)));
        }
    }
}

impl AggregateFunction<Row> for SqlAggregate {
    type Acc = Vec<Acc>;
    type Out = Vec<Value>;

    fn create_accumulator(&self) -> Vec<Acc> {
        self.calls.iter().map(AggCall::fresh).collect()
    }

    fn add(&self, row: &Row, acc: &mut Vec<Acc>) {
        for (call, a) in self.calls.iter().zip(acc.iter_mut()) {
            if let Some(f) = call.filter
                && !matches!(row.0.get(f), Some(Value::Bool(true)))
            {
                continue;
            }
            call.fold(a, call.arg.and_then(|i| row.0.get(i)));
        }
    }

    fn get_result(&self, acc: &Vec<Acc>) -> Vec<Value> {
        self.calls
            .iter()
            .zip(acc.iter())
            .map(|(c, a)| c.result(a))
            .collect()
    }

    fn merge(&self, other: Vec<Acc>, acc: &mut Vec<Acc>) {
        for ((call, o), a) in self.calls.iter().zip(other).zip(acc.iter_mut()) {
            call.merge_into(o, a);
        }
    }

    fn merge_ref(&self, other: &Vec<Acc>, acc: &mut Vec<Acc>) {
        for ((call, o), a) in self.calls.iter().zip(other).zip(acc.iter_mut()) {
            call.merge_ref_into(o, a);
        }
    }
}

/// The accumulators of one subtask's rows of one slice of time (or of one window of a
/// cascade): what the local phase of a two-phase window aggregate sends to the global phase
/// instead of the rows (Flink's local-global window aggregation). Timed at the slice's last
/// millisecond, it falls into exactly the windows its rows fall into: windows are unions of
/// whole slices. `key` is the global phase's key: empty, or a cascade's window bounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Partial {
    /// The key the global phase groups by.
    pub key: Vec<Value>,
    /// The calls' accumulators.
    pub accs: Vec<Acc>,
}

impl SqlAggregate {
    /// The local phase: folds the rows of one batch into one [`Partial`] per slice of `slice`
    /// milliseconds (aligned to the epoch, as the engine aligns windows). Nothing is kept
    /// between batches, so the phase has no state and a checkpoint barrier finds nothing
    /// buffered. Rows without a timestamp pass as a partial of their own, for the global
    /// window to refuse as it refuses such a row.
    pub fn pre_aggregate(&self, rows: Vec<Rec<Row>>, slice: i64) -> Vec<Rec<Partial>> {
        self.fold_partials(rows, &[], |r| {
            if r.ts == NO_TIMESTAMP {
                NO_TIMESTAMP
            } else {
                (r.ts - r.ts.rem_euclid(slice)).saturating_add(slice - 1)
            }
        })
    }

    /// The local phase of a cascade (a window aggregate over a window's result) keyed only
    /// by the windows its rows carry in columns `start` and `end`: one [`Partial`] per window,
    /// keyed by its bounds and timed at its last millisecond.
    pub fn pre_aggregate_windows(
        &self,
        rows: Vec<Rec<Row>>,
        start: usize,
        end: usize,
    ) -> Vec<Rec<Partial>> {
        self.fold_partials(rows, &[start, end], |r| match r.value.0[end] {
            Value::Ts(e) => e - 1,
            _ => r.ts,
        })
    }

    fn fold_partials(
        &self,
        rows: Vec<Rec<Row>>,
        key_cols: &[usize],
        time_of: impl Fn(&Rec<Row>) -> Timestamp,
    ) -> Vec<Rec<Partial>> {
        let mut out: Vec<Rec<Partial>> = Vec::new();
        // Most batches cover one or two slices or windows: the last one is checked first, and
        // an index is only built for batches that scatter over many.
        let mut index: HashMap<(Timestamp, Vec<Value>), usize> = HashMap::new();
        for r in rows {
            let ts = time_of(&r);
            let key = || key_cols.iter().map(|&c| r.value.0[c].clone()).collect();
            let fresh = |key| Rec {
                ts,
                value: Partial {
                    key,
                    accs: self.create_accumulator(),
                },
            };
            let i = match out.last() {
                Some(last)
                    if last.ts == ts
                        && key_cols
                            .iter()
                            .zip(&last.value.key)
                            .all(|(&c, k)| r.value.0[c] == *k) =>
                {
                    out.len() - 1
                }
                None => {
                    out.push(fresh(key()));
                    0
                }
                Some(_) => {
                    if index.is_empty() {
                        index.extend(
                            out.iter()
                                .enumerate()
                                .map(|(i, p)| ((p.ts, p.value.key.clone()), i)),
                        );
                    }
                    *index.entry((ts, key())).or_insert_with(|| {
                        out.push(fresh(key()));
                        out.len() - 1
                    })
                }
            };
            self.add(&r.value, &mut out[i].value.accs);
        }
        out
    }
}

/// The global phase of a two-phase window aggregate: the same calls, folding partial
/// accumulators in. Its state (one accumulator list per key and window or slice) has the
/// single-phase aggregate's type and schema.
#[derive(Debug, Clone)]
pub struct MergePartials(pub SqlAggregate);

impl AggregateFunction<Partial> for MergePartials {
    type Acc = Vec<Acc>;
    type Out = Vec<Value>;

    fn create_accumulator(&self) -> Vec<Acc> {
        self.0.create_accumulator()
    }

    fn add(&self, p: &Partial, acc: &mut Vec<Acc>) {
        self.0.merge_ref(&p.accs, acc)
    }

    fn get_result(&self, acc: &Vec<Acc>) -> Vec<Value> {
        self.0.get_result(acc)
    }

    fn merge(&self, other: Vec<Acc>, acc: &mut Vec<Acc>) {
        self.0.merge(other, acc)
    }

    fn merge_ref(&self, other: &Vec<Acc>, acc: &mut Vec<Acc>) {
        self.0.merge_ref(other, acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(kind: AggKind, ty: SqlType) -> AggCall {
        AggCall {
            kind,
            arg: Some(0),
            filter: None,
            distinct: true,
            ty,
        }
    }

    #[test]
    fn partials_of_slices_merged_give_each_window_what_its_rows_give() {
        let plain = |kind, ty| AggCall {
            distinct: false,
            ..call(kind, ty)
        };
        let agg = SqlAggregate {
            calls: vec![
                plain(AggKind::Count, SqlType::BigInt),
                plain(AggKind::Sum, SqlType::BigInt),
                plain(AggKind::Max, SqlType::BigInt),
                plain(AggKind::Min, SqlType::BigInt),
                call(AggKind::Count, SqlType::BigInt),
                plain(AggKind::Avg, SqlType::Double),
            ],
        };
        // Rows out of order over slices of 10 ms, some before the epoch, split into batches
        // as two subtasks would see them; and one row without a timestamp.
        let rows: Vec<(i64, i64)> = (0..500)
            .map(|i: i64| ((i * 7919) % 97 - 20, (i * 31) % 13 - 4))
            .collect();
        let rec = |&(ts, v): &(i64, i64)| Rec {
            ts,
            value: Row(vec![Value::Int(v)]),
        };
        let mut partials = Vec::new();
        for batch in rows.chunks(37) {
            let out = agg.pre_aggregate(batch.iter().map(rec).collect(), 10);
            // One partial per slice a batch touches, timed at the slice's last millisecond.
            let mut slices: Vec<i64> = batch.iter().map(|r| r.0.div_euclid(10) * 10 + 9).collect();
            slices.sort();
            slices.dedup();
            let mut got: Vec<i64> = out.iter().map(|p| p.ts).collect();
            got.sort();
            assert_eq!(got, slices);
            partials.extend(out);
        }
        let untimed = agg.pre_aggregate(
            vec![Rec {
                ts: NO_TIMESTAMP,
                value: Row(vec![Value::Int(1)]),
            }],
            10,
        );
        assert_eq!(untimed.len(), 1);
        assert_eq!(untimed[0].ts, NO_TIMESTAMP);
        // A HOP window of 30 ms sliding by 10 ms merges three slices' partials: the result
        // is the single-phase aggregate of its rows.
        let global = MergePartials(agg.clone());
        for start in (-30..100).step_by(10) {
            let in_window = |ts: i64| (start..start + 30).contains(&ts);
            let mut direct = agg.create_accumulator();
            for r in rows.iter().filter(|r| in_window(r.0)) {
                agg.add(&rec(r).value, &mut direct);
            }
            let mut merged = global.create_accumulator();
            for p in partials.iter().filter(|p| in_window(p.ts)) {
                assert!(p.value.key.is_empty());
                global.add(&p.value, &mut merged);
            }
            assert_eq!(
                global.get_result(&merged),
                agg.get_result(&direct),
                "window at {start}"
            );
        }
    }

    #[test]
    fn sum_and_avg_distinct_count_each_value_once_through_adds_and_merges() {
        let agg = SqlAggregate {
            calls: vec![
                call(AggKind::Sum, SqlType::BigInt),
                call(AggKind::Avg, SqlType::BigInt),
                call(AggKind::Avg, SqlType::Double),
            ],
        };
        let row = |v: i64| Row(vec![Value::Int(v)]);
        let (mut a, mut b) = (agg.create_accumulator(), agg.create_accumulator());
        for v in [1, 2, 2, 7] {
            agg.add(&row(v), &mut a);
        }
        for v in [7, 3, 1] {
            agg.add(&row(v), &mut b);
        }
        agg.add(&Row(vec![Value::Null]), &mut b);
        assert_eq!(
            agg.get_result(&a),
            vec![Value::Int(10), Value::Int(3), Value::Double(10.0 / 3.0)]
        );
        // {1, 2, 7} ∪ {7, 3, 1} = {1, 2, 3, 7}
        agg.merge_ref(&b, &mut a);
        assert_eq!(
            agg.get_result(&a),
            vec![Value::Int(13), Value::Int(3), Value::Double(13.0 / 4.0)]
        );
    }

    #[test]
    fn sums_of_narrow_integers_wrap_at_their_width_and_keep_the_state_schema_of_bigint() {
        let plain = |kind, ty| AggCall {
            distinct: false,
            ..call(kind, ty)
        };
        let agg = SqlAggregate {
            calls: vec![
                plain(AggKind::Sum, SqlType::Int),
                plain(AggKind::Avg, SqlType::Int),
                plain(AggKind::Sum, SqlType::TinyInt),
                plain(AggKind::Max, SqlType::Int),
            ],
        };
        let mut acc = agg.create_accumulator();
        for v in [2_000_000_000, 2_000_000_000, 100] {
            agg.add(&Row(vec![Value::Int(v)]), &mut acc);
        }
        // 4000000100 wraps to 4000000100 − 2³² as INT and to its low 8 bits (100) as TINYINT;
        // AVG divides the 64-bit sum.
        assert_eq!(
            agg.get_result(&acc),
            vec![
                Value::Int(4_000_000_100 - (1 << 32)),
                Value::Int(4_000_000_100 / 3),
                Value::Int(100),
                Value::Int(2_000_000_000),
            ]
        );
        // Accumulators of integers of any width are stored alike, and savepoints taken when
        // INT was carried as BIGINT declared BIGINT: the schema stays the same.
        let as_bigint = SqlAggregate {
            calls: agg
                .calls
                .iter()
                .map(|c| AggCall {
                    ty: SqlType::BigInt,
                    ..c.clone()
                })
                .collect(),
        };
        assert_eq!(
            agg.state_schema(&[SqlType::SmallInt]),
            as_bigint.state_schema(&[SqlType::BigInt])
        );
        assert_eq!(
            agg.state_schema(&[SqlType::Int]),
            "keys(BIGINT) aggs(SUM BIGINT, AVG BIGINT, SUM BIGINT, MAX BIGINT)"
        );
    }

    #[test]
    fn an_updating_sum_distinct_reads_its_result_without_refolding_the_set() {
        // A non-windowed GROUP BY asks for the result after every row: re-folding the set
        // each time made 50 000 rows of one group take minutes (quadratic); a running sum
        // takes milliseconds.
        let agg = SqlAggregate {
            calls: vec![call(AggKind::Sum, SqlType::BigInt)],
        };
        let mut acc = agg.create_accumulator();
        let started = std::time::Instant::now();
        for v in 0..50_000i64 {
            agg.add(&Row(vec![Value::Int(v % 40_000)]), &mut acc);
            let _ = agg.get_result(&acc);
        }
        assert_eq!(agg.get_result(&acc), vec![Value::Int(39_999 * 40_000 / 2)]);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
}

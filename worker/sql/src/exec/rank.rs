//! Top-N and deduplication over an append-only input (`ROW_NUMBER() OVER (PARTITION BY …
//! ORDER BY …)` filtered by `rn <= N`): per partition key, the N first rows in the sort
//! order, kept sorted in keyed state (`rank-rows`). A row that sorts into the first N takes
//! its place; every row whose rank changed is retracted at its rank (`-U[row, r]`) and the row
//! now at that rank emitted (`+U[row', r]`), the rank past the old end as an insert
//! (`+I[row, r]`); the row pushed past N leaves without a row of its own, as in Flink's
//! append-only Top-N with the row number. Rows equal in the sort order keep their arrival
//! order (a later row ranks after), except in a deduplication keeping the last row by time
//! (`ORDER BY rowtime DESC`, N = 1), where a later row of the same time replaces the earlier,
//! as Flink's.

use crate::changelog::RowKind;
use crate::value::{Row, Value};
use std::cmp::Ordering;
use weir_engine::api::{Collector, KeyedContext, KeyedProcessFunction, RuntimeContext};
use weir_engine::state::{StateDescriptor, StateTtlConfig, ValueState};

/// The name of the sorted rows in keyed state.
pub(crate) const STATE_NAME: &str = "rank-rows";

/// One ORDER BY key: its column in the input row and its direction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SortKey {
    pub(crate) col: usize,
    pub(crate) descending: bool,
    /// NULLs before the other values (Flink's default: first when ascending, last when
    /// descending).
    pub(crate) nulls_first: bool,
}

/// Keeps each partition's first `n` rows and emits the changes to them.
#[derive(Clone)]
pub(crate) struct RankFn {
    order: Vec<SortKey>,
    n: usize,
    /// A row equal in the sort order to a kept one ranks before it (dedup keeping the last).
    later_first: bool,
    /// The columns emitted (the input's visible columns, a prefix of its row).
    width: usize,
    ttl: Option<StateTtlConfig>,
    rows: ValueState<Vec<Row>>,
}

impl RankFn {
    pub(crate) fn new(
        order: Vec<SortKey>,
        n: usize,
        later_first: bool,
        width: usize,
        ttl: Option<std::time::Duration>,
    ) -> Self {
        RankFn {
            order,
            n,
            later_first,
            width,
            ttl: ttl.map(StateTtlConfig::new),
            rows: ValueState::default(),
        }
    }

    fn compare(&self, a: &Row, b: &Row) -> Ordering {
        for k in &self.order {
            let (x, y) = (&a.0[k.col], &b.0[k.col]);
            let o = match (x, y) {
                (Value::Null, Value::Null) => Ordering::Equal,
                (Value::Null, _) if k.nulls_first => Ordering::Less,
                (Value::Null, _) => Ordering::Greater,
                (_, Value::Null) if k.nulls_first => Ordering::Greater,
                (_, Value::Null) => Ordering::Less,
                _ if k.descending => y.cmp(x),
                _ => x.cmp(y),
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }

    fn emit(&self, row: &Row, rank: usize, kind: RowKind, out: &mut Collector<Row>) {
        let mut v = Vec::with_capacity(self.width + 2);
        v.extend_from_slice(&row.0[..self.width]);
        v.push(Value::Int(rank as i64));
        v.push(Value::Int(kind as i64));
        out.collect(Row(v));
    }
}

impl KeyedProcessFunction for RankFn {
    type Key = Vec<Value>;
    type In = Row;
    type Out = Row;

    fn open(&mut self, ctx: &mut RuntimeContext<'_>) -> weir_engine::Result<()> {
        self.rows = ctx.value_state(StateDescriptor::new(STATE_NAME).with_ttl(self.ttl));
        Ok(())
    }

    fn process_element(
        &mut self,
        row: Row,
        ctx: &mut KeyedContext<'_, Vec<Value>>,
        out: &mut Collector<Row>,
    ) -> weir_engine::Result<()> {
        // The changed ranks: (rank - 1, the row there before, if any), then the new rows.
        let this = &*self;
        let changed = self.rows.update_with(ctx, Vec::new, |rows| {
            // The first position whose row sorts after the new one (or not before it).
            let p = rows.partition_point(|r| match this.compare(r, &row) {
                Ordering::Less => true,
                Ordering::Equal => !this.later_first,
                Ordering::Greater => false,
            });
            if p >= this.n {
                return None;
            }
            let before: Vec<Row> = rows[p..].to_vec();
            rows.insert(p, row);
            rows.truncate(this.n);
            Some((p, before, rows[p..].to_vec()))
        });
        let Some((p, before, after)) = changed else {
            return Ok(());
        };
        for (i, new) in after.iter().enumerate() {
            let rank = p + i + 1;
            match before.get(i) {
                Some(old) => {
                    self.emit(old, rank, RowKind::UpdateBefore, out);
                    self.emit(new, rank, RowKind::UpdateAfter, out);
                }
                None => self.emit(new, rank, RowKind::Insert, out),
            }
        }
        Ok(())
    }
}

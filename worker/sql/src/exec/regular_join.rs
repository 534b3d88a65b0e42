//! A regular (unbounded) inner join of two append-only inputs: both inputs' rows, each
//! tagged with its side (a trailing `0` or `1`), arrive keyed by the equi-join keys; each row
//! is joined with the other side's rows kept for its key, and then kept itself. The output
//! is append-only: an inner join of append-only inputs never takes a row back.
//!
//! State: per key, one list of rows per side (`regular-join-left`, `regular-join-right`),
//! so checkpoints, savepoints and rescaling carry them as any keyed state. With
//! `table.exec.state.ttl` the lists expire that long (processing time) after the last row of
//! their side arrived for the key, as Flink's idle-state retention drops a join's state.

use crate::join::PairCondition;
use crate::value::{Row, Value};
use weir_engine::api::{Collector, KeyedContext, KeyedProcessFunction, RuntimeContext};
use weir_engine::state::{ListState, StateDescriptor, StateTtlConfig};

/// The names of the two sides' row lists in keyed state.
pub(crate) const STATE_NAMES: [&str; 2] = ["regular-join-left", "regular-join-right"];

/// Joins each arriving row with the rows the other side keeps for its key.
#[derive(Clone)]
pub(crate) struct RegularJoinFn {
    /// Column counts of the two sides (a side's rows may carry computed keys after them).
    widths: [usize; 2],
    /// The non-equi conditions over a joined row (left columns then right).
    cond: Option<PairCondition>,
    ttl: Option<StateTtlConfig>,
    rows: [ListState<Row>; 2],
}

impl RegularJoinFn {
    pub(crate) fn new(
        widths: [usize; 2],
        cond: Option<PairCondition>,
        ttl: Option<std::time::Duration>,
    ) -> Self {
        RegularJoinFn {
            widths,
            cond,
            ttl: ttl.map(StateTtlConfig::new),
            rows: Default::default(),
        }
    }
}

impl KeyedProcessFunction for RegularJoinFn {
    type Key = Vec<Value>;
    type In = Row;
    type Out = Row;

    fn open(&mut self, ctx: &mut RuntimeContext<'_>) -> weir_engine::Result<()> {
        let desc = |name: &str| StateDescriptor::new(name).with_ttl(self.ttl);
        self.rows = [
            ctx.list_state(desc(STATE_NAMES[0])),
            ctx.list_state(desc(STATE_NAMES[1])),
        ];
        Ok(())
    }

    fn process_element(
        &mut self,
        mut row: Row,
        ctx: &mut KeyedContext<'_, Vec<Value>>,
        out: &mut Collector<Row>,
    ) -> weir_engine::Result<()> {
        let side = match row.0.pop() {
            Some(Value::Int(1)) => 1,
            _ => 0,
        };
        row.0.truncate(self.widths[side]);
        let others = self.rows[1 - side].get(ctx);
        // One scratch row: this row in its place once, each partner copied into the other
        // place; only a pair that satisfies the condition is copied out.
        let nl = self.widths[0];
        let mut joined = vec![Value::Null; nl + self.widths[1]];
        let (mine, theirs) = if side == 0 {
            (0..nl, nl..joined.len())
        } else {
            (nl..joined.len(), 0..nl)
        };
        joined[mine].clone_from_slice(&row.0);
        for o in &others {
            joined[theirs.clone()].clone_from_slice(&o.0);
            if PairCondition::holds(self.cond.as_ref(), &joined)? {
                out.collect(Row(joined.clone()));
            }
        }
        self.rows[side].add(ctx, row);
        Ok(())
    }
}

//! The seed's example, almost line for line from its Flink original: a
//! KeyedProcessFunction that counts events per user in `ValueState` and, one minute of
//! event time after a user's first event, emits the count and clears the state from a timer.

use super::user_metrics::{Click, EPOCH_2026};
use super::{JobArgs, JobDef};
use anyhow::Result;
use rand::Rng;
use weir_engine::api::{
    Collector, KeyedContext, KeyedProcessFunction, RuntimeContext, StreamExecutionEnvironment,
};
use weir_engine::connectors::DataGen;
use weir_engine::state::{StateDescriptor, ValueState};
use weir_engine::time::WatermarkStrategy;

pub const JOB: JobDef = JobDef {
    name: "count-per-user",
    about: "KeyedProcessFunction: count per user in ValueState, emit and clear from an event-time timer",
    args: &[
        ("events", "20000", "number of events to generate"),
        ("users", "5", "number of distinct users"),
    ],
    build,
};

/// Counts a user's events and reports them one minute after the user's first event.
#[derive(Clone, Default)]
pub struct CountPerUser {
    count: ValueState<u64>,
}

impl KeyedProcessFunction for CountPerUser {
    type Key = String;
    type In = Click;
    type Out = (String, u64);

    fn open(&mut self, ctx: &mut RuntimeContext<'_>) -> weir_engine::Result<()> {
        self.count = ctx.value_state(StateDescriptor::new("count"));
        Ok(())
    }

    fn process_element(
        &mut self,
        event: Click,
        ctx: &mut KeyedContext<'_, String>,
        _out: &mut Collector<(String, u64)>,
    ) -> weir_engine::Result<()> {
        let current = self.count.value(ctx).unwrap_or(0);
        if current == 0 {
            ctx.timer_service()
                .register_event_time_timer(event.ts + 60_000);
        }
        self.count.update(ctx, current + 1);
        Ok(())
    }

    fn on_timer(
        &mut self,
        _timestamp: i64,
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<(String, u64)>,
    ) -> weir_engine::Result<()> {
        let count = self.count.value(ctx).unwrap_or(0);
        out.collect((ctx.current_key().clone(), count));
        self.count.clear(ctx);
        Ok(())
    }
}

fn build(env: &StreamExecutionEnvironment, args: &JobArgs) -> Result<()> {
    let events: u64 = args.number("events")?;
    let users: u64 = args.number::<u64>("users")?.max(1);
    let clicks = DataGen::new(11, move |g| Click {
        user_id: format!("user_{}", g.rng.gen_range(0..users)),
        amount: 1.0,
        ts: EPOCH_2026 + g.index as i64 * 50,
    })
    .bounded(events);
    env.from_source(
        clicks,
        Some(
            WatermarkStrategy::for_monotonous_timestamps()
                .with_timestamp_assigner(|c: &Click| c.ts),
        ),
        "Clicks",
    )
    .key_by(|c: &Click| c.user_id.clone())
    .process(CountPerUser::default())
    .uid("count-per-user")
    .print();
    Ok(())
}

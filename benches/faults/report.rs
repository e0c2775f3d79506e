//! A scenario's result: the load's [`Tally`], the outcomes the fault may cause, the scenario's
//! own checks; printed as a table, judged as pass or fail.

use std::time::Duration;

use crate::harness::Gateway;
use crate::load::{Outcome, Phase, Tally};

pub struct Report {
    pub tally: Tally,
    /// Outcomes that are documented while the fault lasts (`Ok` always is).
    pub allowed_in_fault: Vec<Outcome>,
    /// How long the fault phase lasted (from the fault until the system said it recovered).
    pub fault_window: Duration,
    /// Checks of the scenario's own: what, and whether it held.
    pub checks: Vec<(String, bool)>,
    /// The gateways' warnings and errors (distinct lines, at most [`MAX_LOG_LINES`]), printed
    /// when the scenario fails, to say why.
    pub gateway_log: Vec<String>,
    /// What the scenario measured, set up or found that is no check (evidence for a failure).
    pub notes: Vec<String>,
}

const MAX_LOG_LINES: usize = 12;

impl Report {
    pub fn new(tally: Tally, allowed_in_fault: &[Outcome], fault_window: Duration) -> Report {
        Report {
            tally,
            allowed_in_fault: allowed_in_fault.to_vec(),
            fault_window,
            checks: Vec::new(),
            gateway_log: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Keep what `gw` logged (its distinct warnings and errors, its audit events), printed
    /// when the scenario fails, to say why.
    pub fn log_of(mut self, gw: &Gateway) -> Report {
        self.gateway_log.extend(
            crate::store::gateway_evidence(gw)
                .into_iter()
                .take(MAX_LOG_LINES),
        );
        self
    }

    pub fn note(mut self, text: impl Into<String>) -> Report {
        self.notes.push(text.into());
        self
    }

    pub fn check(mut self, what: impl Into<String>, held: bool) -> Report {
        self.checks.push((what.into(), held));
        self
    }

    /// Outcomes not documented for the phase they happened in, with their counts.
    pub fn undocumented(&self) -> Vec<(Phase, Outcome, u64)> {
        let mut out = Vec::new();
        for p in Phase::ALL {
            for (o, n) in &self.tally.phase(p).outcomes {
                let fine =
                    *o == Outcome::Ok || (p == Phase::Fault && self.allowed_in_fault.contains(o));
                if !fine {
                    out.push((p, *o, *n));
                }
            }
        }
        out
    }

    pub fn passed(&self) -> bool {
        self.tally.sessions_lost == 0
            && self.undocumented().is_empty()
            && self.checks.iter().all(|(_, held)| *held)
            && self.tally.total().count(Outcome::Ok) > 0
    }

    pub fn print(&self) {
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        println!(
            "{:<7} {:>9} {:>9}  {:<44} {:>8} {:>8}",
            "phase", "requests", "ok", "other outcomes", "p50 ms", "p99 ms"
        );
        for p in Phase::ALL {
            let t = self.tally.phase(p);
            let others: Vec<String> = t
                .outcomes
                .iter()
                .filter(|(o, _)| **o != Outcome::Ok)
                .map(|(o, n)| format!("{} {n}", o.label()))
                .collect();
            println!(
                "{:<7} {:>9} {:>9}  {:<44} {:>8} {:>8}",
                p.name(),
                t.requests(),
                t.count(Outcome::Ok),
                if others.is_empty() {
                    "-".to_string()
                } else {
                    others.join(", ")
                },
                ms(t.quantile_ms(0.5)),
                ms(t.quantile_ms(0.99)),
            );
        }
        println!(
            "fault window {:.1} s; sessions {} started, {} lost; logouts checked refused: {}; \
             in flight across a phase change (judged as fault): {}",
            self.fault_window.as_secs_f64(),
            self.tally.sessions,
            self.tally.sessions_lost,
            self.tally.revocations_checked,
            self.tally.crossed
        );
        for n in &self.notes {
            println!("  {n}");
        }
        for (what, held) in &self.checks {
            println!("  [{}] {what}", if *held { "ok" } else { "FAIL" });
        }
        for (p, o, n) in self.undocumented() {
            println!(
                "  [FAIL] undocumented in phase {}: {} × {n}",
                p.name(),
                o.label()
            );
            if let Some(sample) = self.tally.phase(p).samples.get(&o) {
                println!("         first: {sample}");
            }
        }
        if !self.passed() && !self.gateway_log.is_empty() {
            println!("  the gateway's warnings and errors:");
            for line in &self.gateway_log {
                println!("    {line}");
            }
        }
        println!("{}", if self.passed() { "PASS" } else { "FAIL" });
    }
}

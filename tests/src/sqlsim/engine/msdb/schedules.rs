//! A schedule's parameters as `sp_add_schedule` and `sp_add_jobschedule` take them, and the
//! checks msdb's `sp_verify_schedule` makes before either stores one, in its order and with its
//! numbers (SQL Server's source says the procedure is "a SQL implementation of VerifySchedule in
//! job.c"): 14295 for freq_type 0x2 (OnDemand), 14266 for a freq_type or freq_subday_type
//! outside the valid values, and 14278 "The schedule for this job is invalid (reason: …)."
//! with the reason text msdb formats for the interval, the daily / weekly / monthly day fields
//! and the recurrence factor. One-time, Agent-start and idle schedules (0x1, 0x40, 0x80) have
//! their frequency fields zeroed and pass, as in msdb; a recurring schedule without a subday
//! type runs once a day (0x1).
//!
//! **The 10-second rule.** msdb refuses a seconds-based interval (`@freq_subday_type = 0x2`)
//! under 10 (`MIN_SCHEDULE_GRANULARITY` in SQL Server Agent) with 14278, reason `The specified
//! '@freq_subday_interval' is invalid.`; sqlsim does the same by default. The lab and some tests
//! want log shipping cycles of a second or two (an SSMS-style setup a DBA would make with 15
//! minutes), so `--lab-short-schedules` lowers the minimum to 1 second. That flag is a
//! **lab-only deviation from SQL Server**, off unless asked for: the product itself never asks
//! for less than 10 seconds (failback_proto's `Interval::from_seconds` refuses it), so product
//! paths are tested against SQL Server's rule.
//!
//! Not modelled: the owner and name checks before these (14366, 14234, 14200 for `ALL`),
//! `@enabled` outside 0/1, and the active date / time checks (sp_verify_job_date,
//! sp_verify_job_time, 14288, start time = end time).

use super::Schedule;
use super::args::Bound;
use crate::sqlsim::clock::Timestamp;
use crate::sqlsim::engine::state::new_guid;
use crate::sqlsim::tokens::ServerMessage;

/// SQL Server Agent's shortest seconds-based interval (`MIN_SCHEDULE_GRANULARITY`).
pub const SQL_SERVER_MIN_SECONDS: i32 = 10;
/// The shortest seconds-based interval under `--lab-short-schedules` (lab-only deviation).
pub const LAB_MIN_SECONDS: i32 = 1;

/// The schedule parameters of sp_add_schedule / sp_add_jobschedule, unchecked.
pub(super) fn schedule_from(b: &Bound<'_>, name: String, id: i32) -> Schedule {
    let today = Timestamp::now_local().agent_date();
    Schedule {
        schedule_id: id,
        schedule_uid: new_guid(),
        name,
        enabled: b.int_or("@enabled", 1) != 0,
        freq_type: b.int_or("@freq_type", 1) as i32,
        freq_interval: b.int_or("@freq_interval", 1) as i32,
        freq_subday_type: b.int_or("@freq_subday_type", 0) as i32,
        freq_subday_interval: b.int_or("@freq_subday_interval", 0) as i32,
        freq_relative_interval: b.int_or("@freq_relative_interval", 0) as i32,
        freq_recurrence_factor: b.int_or("@freq_recurrence_factor", 0) as i32,
        active_start_date: b.int("@active_start_date").unwrap_or(today),
        active_end_date: b.int_or("@active_end_date", 99_991_231),
        active_start_time: b.int_or("@active_start_time", 0),
        active_end_time: b.int_or("@active_end_time", 235_959),
        date_created: Timestamp::now(),
    }
}

fn msg(number: i32, text: impl Into<String>) -> ServerMessage {
    // RAISERROR(n, -1, -1, …): the message's own severity (16) and state 1.
    ServerMessage::new(number, 1, 16, text)
}

/// 14266 `The specified '%s' is invalid (valid values are: %s).`
fn not_valid_values(param: &str, valid: &str) -> ServerMessage {
    msg(
        14266,
        format!("The specified '{param}' is invalid (valid values are: {valid})."),
    )
}

/// 14278 `The schedule for this job is invalid (reason: %s).`
fn invalid_schedule(reason: &str) -> ServerMessage {
    msg(
        14278,
        format!("The schedule for this job is invalid (reason: {reason})."),
    )
}

/// sp_verify_schedule's frequency checks (module doc). `min_seconds` is
/// [`SQL_SERVER_MIN_SECONDS`], or [`LAB_MIN_SECONDS`] under `--lab-short-schedules`. On success
/// the schedule is as msdb stores it (fields zeroed for one-time schedules, subday type 0 → 1).
pub(super) fn verify_schedule(s: &mut Schedule, min_seconds: i32) -> Result<(), ServerMessage> {
    if s.freq_type == 0x2 {
        return Err(msg(
            14295,
            "Frequency Type 0x2 (OnDemand) is no longer supported.",
        ));
    }
    if ![0x1, 0x4, 0x8, 0x10, 0x20, 0x40, 0x80].contains(&s.freq_type) {
        return Err(not_valid_values("@freq_type", "1, 4, 8, 16, 32, 64, 128"));
    }
    if s.freq_subday_type != 0 && ![0x1, 0x2, 0x4, 0x8].contains(&s.freq_subday_type) {
        return Err(not_valid_values("@freq_subday_type", "0x1, 0x2, 0x4, 0x8"));
    }
    if matches!(s.freq_type, 0x1 | 0x40 | 0x80) {
        s.freq_interval = 0;
        s.freq_subday_type = 0;
        s.freq_subday_interval = 0;
        s.freq_relative_interval = 0;
        s.freq_recurrence_factor = 0;
        return Ok(());
    }
    if s.freq_subday_type == 0 {
        s.freq_subday_type = 0x1;
    }
    if (s.freq_subday_type != 0x1 && s.freq_subday_interval < 1)
        || (s.freq_subday_type == 0x2 && s.freq_subday_interval < min_seconds)
    {
        // FORMATMESSAGE(14200, '@freq_subday_interval')
        return Err(invalid_schedule(
            "The specified '@freq_subday_interval' is invalid.",
        ));
    }
    // The reasons below are FORMATMESSAGE(14572) … (14577).
    match s.freq_type {
        0x4 => {
            s.freq_recurrence_factor = 0;
            if s.freq_interval < 1 {
                return Err(invalid_schedule(
                    "@freq_interval must be at least 1 for a daily job.",
                ));
            }
        }
        0x8 if !(1..=127).contains(&s.freq_interval) => {
            return Err(invalid_schedule(
                "@freq_interval must be a valid day of the week bitmask [Sunday = 1 .. Saturday = 64] for a weekly job.",
            ));
        }
        0x10 if !(1..=31).contains(&s.freq_interval) => {
            return Err(invalid_schedule(
                "@freq_interval must be between 1 and 31 for a monthly job.",
            ));
        }
        0x20 if ![0x1, 0x2, 0x4, 0x8, 0x10].contains(&s.freq_relative_interval) => {
            return Err(invalid_schedule(
                "@freq_relative_interval must be one of 1st (0x1), 2nd (0x2), 3rd [0x4], 4th (0x8) or Last (0x10).",
            ));
        }
        0x20 if !(1..=10).contains(&s.freq_interval) => {
            return Err(invalid_schedule(
                "@freq_interval must be between 1 and 10 (1 = Sunday .. 7 = Saturday, 8 = Day, 9 = Weekday, 10 = Weekend-day) for a monthly-relative job.",
            ));
        }
        _ => {}
    }
    if matches!(s.freq_type, 0x8 | 0x10 | 0x20) && s.freq_recurrence_factor < 1 {
        return Err(invalid_schedule(
            "@freq_recurrence_factor must be at least 1.",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(freq_type: i32, subday: i32, n: i32) -> Schedule {
        Schedule {
            schedule_id: 1,
            schedule_uid: String::new(),
            name: "s".into(),
            enabled: true,
            freq_type,
            freq_interval: 1,
            freq_subday_type: subday,
            freq_subday_interval: n,
            freq_relative_interval: 0,
            freq_recurrence_factor: 0,
            active_start_date: 20240101,
            active_end_date: 99991231,
            active_start_time: 0,
            active_end_time: 235959,
            date_created: Timestamp::now(),
        }
    }

    fn number(s: Schedule, min: i32) -> Option<i32> {
        let mut s = s;
        verify_schedule(&mut s, min).err().map(|m| m.number)
    }

    #[test]
    fn seconds_intervals_follow_the_minimum() {
        let m = SQL_SERVER_MIN_SECONDS;
        for n in [1, 9] {
            assert_eq!(number(sched(4, 2, n), m), Some(14278), "{n} s");
        }
        assert_eq!(number(sched(4, 2, 10), m), None);
        assert_eq!(number(sched(4, 2, 1), LAB_MIN_SECONDS), None);
        // Below 1 is refused under either minimum; minutes and hours have no floor above 1.
        assert_eq!(number(sched(4, 2, 0), LAB_MIN_SECONDS), Some(14278));
        assert_eq!(number(sched(4, 4, 0), m), Some(14278));
        assert_eq!(number(sched(4, 4, 1), m), None);
        assert_eq!(number(sched(8, 2, 5), m), Some(14278));
    }

    #[test]
    fn one_time_schedules_are_zeroed_and_recurring_ones_default_to_once() {
        let mut once = sched(1, 2, 1);
        verify_schedule(&mut once, SQL_SERVER_MIN_SECONDS).unwrap();
        assert_eq!(
            (
                once.freq_interval,
                once.freq_subday_type,
                once.freq_subday_interval
            ),
            (0, 0, 0)
        );
        let mut daily = sched(4, 0, 0);
        verify_schedule(&mut daily, SQL_SERVER_MIN_SECONDS).unwrap();
        assert_eq!(daily.freq_subday_type, 1);
    }

    #[test]
    fn frequency_fields_get_msdbs_numbers() {
        let m = SQL_SERVER_MIN_SECONDS;
        assert_eq!(number(sched(2, 1, 0), m), Some(14295));
        assert_eq!(number(sched(3, 1, 0), m), Some(14266));
        assert_eq!(number(sched(4, 3, 1), m), Some(14266));
        assert_eq!(number(sched(1, 3, 1), m), Some(14266));
        let mut daily = sched(4, 1, 0);
        daily.freq_interval = 0;
        assert_eq!(number(daily, m), Some(14278));
        let mut weekly = sched(8, 1, 0);
        weekly.freq_interval = 2;
        assert_eq!(number(weekly.clone(), m), Some(14278));
        weekly.freq_recurrence_factor = 1;
        assert_eq!(number(weekly, m), None);
        let mut e = sched(3, 1, 0);
        let t = verify_schedule(&mut e, m).unwrap_err().message;
        assert_eq!(
            t,
            "The specified '@freq_type' is invalid (valid values are: 1, 4, 8, 16, 32, 64, 128)."
        );
    }
}

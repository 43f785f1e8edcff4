//! RFC 3339 times (image configs' `created`, TUF expiry dates) as seconds since the epoch,
//! with Howard Hinnant's civil-date algorithms (public domain).

/// Seconds since the epoch of an RFC 3339 time (`2029-12-01T10:00:00.123Z`, or with an
/// offset); `None` when it is not one, or out of range.
#[must_use]
pub fn parse(text: &str) -> Option<i64> {
    parse_nanos(text).map(|(secs, _)| secs)
}

/// [`parse`], with the fraction of the second as nanoseconds (digits past the ninth are
/// dropped).
#[allow(clippy::many_single_char_names)]
#[must_use]
pub fn parse_nanos(text: &str) -> Option<(i64, u32)> {
    let (date, rest) = text.split_once(['T', 't'])?;
    let mut d = date.split('-');
    let (y, m, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    if d.next().is_some() {
        return None;
    }
    let (clock, offset) = if let Some(c) = rest.strip_suffix('Z').or_else(|| rest.strip_suffix('z')) {
        (c, 0)
    } else {
        let at = rest.rfind(['+', '-'])?;
        let (c, o) = rest.split_at(at);
        let sign = if o.starts_with('-') { -1 } else { 1 };
        let (oh, om) = o[1..].split_once(':')?;
        (
            c,
            sign * (i64::from(oh.parse::<u8>().ok()?) * 3600 + i64::from(om.parse::<u8>().ok()?) * 60),
        )
    };
    let (clock, fraction) = match clock.split_once('.') {
        Some((clock, fraction)) => (clock, Some(fraction)),
        None => (clock, None),
    };
    let nanos = match fraction {
        None => 0,
        Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
            let digits = &f[..f.len().min(9)];
            digits.parse::<u32>().ok()? * 10u32.pow(9 - u32::try_from(digits.len()).ok()?)
        }
        Some(_) => return None,
    };
    let mut t = clock.split(':');
    let (h, min, s): (i64, i64, i64) = (
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
    );
    if t.next().is_some()
        || !(0..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || !(0..=23).contains(&h)
        || !(0..=59).contains(&min)
        || !(0..=60).contains(&s)
        || offset.abs() > 24 * 3600
    {
        return None;
    }
    Some((
        days_from_civil(y, m, day) * 86_400 + h * 3600 + min * 60 + s - offset,
        nanos,
    ))
}

/// `YYYY-MM-DDTHH:MM:SSZ` of seconds since the epoch.
#[must_use]
pub fn format(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse("2026-12-01T10:00:00.123456789Z"), Some(1_796_119_200));
        assert_eq!(
            parse_nanos("2026-12-01T10:00:00.123456789123Z"),
            Some((1_796_119_200, 123_456_789))
        );
        assert_eq!(
            parse_nanos("2024-01-04T06:00:00.25+01:00"),
            Some((1_704_344_400, 250_000_000))
        );
        assert_eq!(parse("2026-12-01T11:00:00+01:00"), Some(1_796_119_200));
        assert_eq!(parse("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse("2026-12-01T10:00:00.Z"), None);
        assert_eq!(parse("2026-12-01T10:00:00"), None);
        assert_eq!(parse("yesterday"), None);
        // hostile numbers are refused, not overflowed
        assert_eq!(parse("9223372036854775807-01-01T00:00:00Z"), None);
        assert_eq!(parse("2026-01-01T00:00:00+99:00"), None);
        assert_eq!(parse("2026-01-01T00:00:00+999999999999:00"), None);
        assert_eq!(format(1_796_119_200), "2026-12-01T10:00:00Z");
        for t in [0, 951_782_400, 4_102_444_800, -86_401] {
            assert_eq!(parse(&format(t)), Some(t));
        }
    }
}

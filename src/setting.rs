//! One setting's checks, shared by the modules that own `serve`'s settings and check their own
//! section of them: present, seconds in range, at least 1, both or neither, one of named choices.
//! Each problem is an [`Unusable`] naming the setting as the user spells its flag. Pure.

use std::time::Duration;

/// A setting that cannot be used: the setting, as the user spells it, and why.
#[derive(Debug)]
pub struct Unusable {
    /// The flag, config key or variable.
    pub setting: &'static str,
    /// What is wrong, without the value when it is a secret.
    pub message: String,
}

/// The problem `message` with `setting`.
pub fn unusable(setting: &'static str, message: impl Into<String>) -> Unusable {
    let message = message.into();
    Unusable { setting, message }
}

/// A default as a flag would give it: a duration in seconds.
pub fn secs(d: Duration) -> Option<f64> {
    Some(d.as_secs_f64())
}

/// A merged setting's value; only a setting without a default can be missing here.
pub fn given<T>(setting: &'static str, value: Option<T>) -> Result<T, Unusable> {
    value.ok_or_else(|| unusable(setting, "has no value"))
}

/// A number of seconds above 0 and at most an hour.
pub fn seconds(setting: &'static str, value: Option<f64>) -> Result<Duration, Unusable> {
    let value = given(setting, value)?;
    if !(value.is_finite() && value > 0.0 && value <= 3600.0) {
        let message = "must be a number of seconds above 0 and at most 3600";
        return Err(unusable(setting, message));
    }
    Ok(Duration::from_secs_f64(value))
}

/// Like [`seconds`], but 0 (off) is allowed.
pub fn seconds_or_off(setting: &'static str, value: Option<f64>) -> Result<Duration, Unusable> {
    match value {
        Some(0.0) => Ok(Duration::ZERO),
        value => seconds(setting, value),
    }
}

/// A count of at least 1.
pub fn positive<T: Default + PartialEq>(
    setting: &'static str,
    value: Option<T>,
) -> Result<T, Unusable> {
    match given(setting, value)? {
        zero if zero == T::default() => Err(unusable(setting, "must be at least 1")),
        value => Ok(value),
    }
}

/// The choice `value` names, or an error listing the choices: `"x" is not a role (primary or
/// fallback)`.
pub fn one_of<T: Copy>(
    setting: &'static str,
    what: &str,
    value: Option<&str>,
    choices: &[(&str, T)],
) -> Result<T, Unusable> {
    let value = given(setting, value)?;
    if let Some((_, choice)) = choices.iter().find(|(name, _)| *name == value) {
        return Ok(*choice);
    }
    let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
    let message = format!("{value:?} is not a {what} ({})", names.join(" or "));
    Err(unusable(setting, message))
}

/// Both or neither: a certificate and its key; each missing one names itself.
pub fn pair<T>(
    first: Option<T>,
    second: Option<T>,
    no_second: (&'static str, &str),
    no_first: (&'static str, &str),
) -> Result<Option<(T, T)>, Unusable> {
    match (first, second) {
        (Some(first), Some(second)) => Ok(Some((first, second))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(unusable(no_second.0, no_second.1)),
        (None, Some(_)) => Err(unusable(no_first.0, no_first.1)),
    }
}

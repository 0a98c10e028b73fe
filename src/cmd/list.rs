//! Comma-separated lists of named values (`--fail-on definite,indirect`,
//! `--simulate first-fit,buddy`, `--only heap,leaks`).
//!
//! An option takes `value_delimiter = ','` and [`Item`] as its value
//! parser: clap splits the list and checks every item against a
//! `ValueEnum`, so that `--help` lists the values and a bad item is an
//! error naming the valid ones. [`Item`] also ignores spaces around an
//! item (`"definite, indirect"`) and, when asked, empty items (a trailing
//! comma, or an empty list), as the hand-written parsers before it did.

use std::ffi::OsStr;
use std::marker::PhantomData;

use clap::builder::{EnumValueParser, PossibleValue, TypedValueParser};
use clap::ValueEnum;

/// The value parser of one item of a list of `E`.
#[derive(Clone)]
pub struct Item<E> {
    /// What an empty item stands for; `None`: an empty item is an error.
    empty: Option<E>,
    _values: PhantomData<E>,
}

impl<E: ValueEnum + Clone + Send + Sync + 'static> Item<E> {
    /// An item must be one of `E`'s values (spaces around it are ignored).
    pub fn new() -> Self {
        Item {
            empty: None,
            _values: PhantomData,
        }
    }

    /// An empty item stands for `value` (a value that adds nothing, such
    /// as `none`), instead of being an error.
    pub fn empty_is(value: E) -> Self {
        Item {
            empty: Some(value),
            _values: PhantomData,
        }
    }
}

impl<E: ValueEnum + Clone + Send + Sync + 'static> TypedValueParser for Item<E> {
    type Value = E;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<E, clap::Error> {
        let trimmed = value.to_str().map_or(value, |s| OsStr::new(s.trim()));
        if let (Some(empty), true) = (&self.empty, trimmed.is_empty()) {
            return Ok(empty.clone());
        }
        EnumValueParser::<E>::new().parse_ref(cmd, arg, trimmed)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            E::value_variants()
                .iter()
                .filter_map(ValueEnum::to_possible_value),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
    enum Colour {
        Red,
        #[value(alias = "verdant")]
        Green,
        None,
    }

    #[derive(Parser, Debug)]
    struct Cli {
        #[arg(long, value_delimiter = ',', value_parser = Item::<Colour>::new())]
        strict: Vec<Colour>,
        #[arg(long, value_delimiter = ',', value_parser = Item::empty_is(Colour::None))]
        lenient: Vec<Colour>,
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
    }

    #[test]
    fn items_are_trimmed_and_aliases_accepted() {
        let cli = parse(&["--strict", "red, verdant ,green"]).unwrap();
        assert_eq!(cli.strict, [Colour::Red, Colour::Green, Colour::Green]);
    }

    #[test]
    fn an_empty_item_is_an_error_or_the_value_asked_for() {
        let e = parse(&["--strict", "red,"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue);
        let cli = parse(&["--lenient", "red,"]).unwrap();
        assert_eq!(cli.lenient, [Colour::Red, Colour::None]);
        let cli = parse(&["--lenient", ""]).unwrap();
        assert_eq!(cli.lenient, [Colour::None]);
    }

    #[test]
    fn a_bad_item_names_the_valid_values() {
        let e = parse(&["--strict", "red,blue"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue);
        let text = e.to_string();
        assert!(
            text.contains("invalid value 'blue' for '--strict <STRICT>'"),
            "{text}"
        );
        assert!(
            text.contains("[possible values: red, green, none]"),
            "{text}"
        );
    }
}

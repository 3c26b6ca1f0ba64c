//! What "stricter" means for every `provider` field a policy binds, defined once.
//!
//! The merge keeps, field by field, the stricter of the client's value and the policy's
//! ([`Strict::stricter`]); the property tests check the merged result against the very same order
//! ([`Strict::at_least_as_strict_as`]). Every type has an "unset" value, and unset is the loosest.

/// A partial order "binds at least as tightly as", and the meet that merging uses.
pub(crate) trait Strict: Sized + PartialEq {
    /// Whether `self` binds at least as tightly as `other`.
    fn at_least_as_strict_as(&self, other: &Self) -> bool;

    /// The loosest value at least as strict as both `self` (the client's side, whose spelling is
    /// kept where it wins) and `policy`; `None` when nothing satisfies both (an empty intersection).
    fn stricter(&self, policy: &Self) -> Option<Self>;
}

/// A requirement that is either on or unset: `zdr`, `require_parameters`,
/// `enforce_distillable_text`, and `data_collection` (on = `"deny"`). `false` is as loose as unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Required(pub(crate) bool);

impl Strict for Required {
    fn at_least_as_strict_as(&self, other: &Self) -> bool {
        self.0 || !other.0
    }

    fn stricter(&self, policy: &Self) -> Option<Self> {
        Some(Required(self.0 || policy.0))
    }
}

/// An upper bound (`max_price.*`, `preferred_max_latency.*`): lower binds tighter.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Ceiling(pub(crate) Option<f64>);

impl Strict for Ceiling {
    fn at_least_as_strict_as(&self, other: &Self) -> bool {
        match (self.0, other.0) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(mine), Some(theirs)) => mine <= theirs,
        }
    }

    fn stricter(&self, policy: &Self) -> Option<Self> {
        Some(if self.at_least_as_strict_as(policy) {
            *self
        } else {
            *policy
        })
    }
}

/// A lower bound (`preferred_min_throughput.*`): higher binds tighter.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Floor(pub(crate) Option<f64>);

impl Strict for Floor {
    fn at_least_as_strict_as(&self, other: &Self) -> bool {
        match (self.0, other.0) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(mine), Some(theirs)) => mine >= theirs,
        }
    }

    fn stricter(&self, policy: &Self) -> Option<Self> {
        Some(if self.at_least_as_strict_as(policy) {
            *self
        } else {
            *policy
        })
    }
}

/// A numeric bound, whichever its direction: how the merge reads and writes one.
pub(crate) trait Limit: Strict + Copy + Default {
    fn of(value: Option<f64>) -> Self;
    fn value(self) -> Option<f64>;
}

impl Limit for Ceiling {
    fn of(value: Option<f64>) -> Self {
        Ceiling(value)
    }
    fn value(self) -> Option<f64> {
        self.0
    }
}

impl Limit for Floor {
    fn of(value: Option<f64>) -> Self {
        Floor(value)
    }
    fn value(self) -> Option<f64> {
        self.0
    }
}

/// Independent bounds side by side (`max_price`'s five prices, the four percentiles): strict
/// when every slot is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Each<T, const N: usize>(pub(crate) [T; N]);

impl<T: Default + Copy, const N: usize> Default for Each<T, N> {
    fn default() -> Self {
        Each([T::default(); N])
    }
}

impl<T: Strict + Copy, const N: usize> Strict for Each<T, N> {
    fn at_least_as_strict_as(&self, other: &Self) -> bool {
        self.0
            .iter()
            .zip(&other.0)
            .all(|(mine, theirs)| mine.at_least_as_strict_as(theirs))
    }

    fn stricter(&self, policy: &Self) -> Option<Self> {
        let mut out = self.0;
        for (slot, theirs) in out.iter_mut().zip(&policy.0) {
            *slot = slot.stricter(theirs)?;
        }
        Some(Each(out))
    }
}

/// The four percentiles OpenRouter's performance preferences take, in their wire order.
pub(crate) const PERCENTILES: [&str; 4] = ["p50", "p75", "p90", "p99"];

/// What a list names: provider slugs (where a base slug covers its regional endpoints) or
/// quantization levels (where `fp4` and `fp8` cover their variants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Vocabulary {
    Provider,
    Quantization,
}

/// One list entry: the spelling to write back, and the key it is compared by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Name {
    pub(crate) spelling: String,
    pub(crate) key: String,
}

impl Name {
    pub(crate) fn new(vocabulary: Vocabulary, spelling: &str) -> Self {
        Self {
            spelling: spelling.to_owned(),
            key: normalise(vocabulary, spelling),
        }
    }
}

/// Providers are compared as slugs: display names (`"Google AI Studio"`) become
/// `google-ai-studio`, and case never matters. Quantizations only ignore case.
pub(crate) fn normalise(vocabulary: Vocabulary, spelling: &str) -> String {
    let trimmed = spelling.trim();
    if trimmed.is_ascii() {
        // The usual case, in one pass and one allocation.
        return trimmed
            .bytes()
            .map(|b| match (b, vocabulary) {
                (b' ', Vocabulary::Provider) => '-',
                _ => char::from(b.to_ascii_lowercase()),
            })
            .collect();
    }
    let lower = trimmed.to_lowercase();
    match vocabulary {
        Vocabulary::Provider => lower.replace(' ', "-"),
        Vocabulary::Quantization => lower,
    }
}

/// Service-tier endpoints (`openai/priority`, `google-vertex/flex`) are separate endpoints that
/// OpenRouter does not match by their base slug.
pub(crate) const TIER_SUFFIXES: [&str; 2] = ["priority", "flex"];

/// Whether naming `general` also names `specific`: equal keys, a base provider slug and one of
/// its regional endpoints (`deepinfra` → `deepinfra/turbo`, never a tier endpoint), or a
/// quantization family and its members (`fp8` → `mxfp8`).
pub(crate) fn covers(vocabulary: Vocabulary, general: &str, specific: &str) -> bool {
    if general == specific {
        return true;
    }
    match vocabulary {
        Vocabulary::Provider => specific
            .strip_prefix(general)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|suffix| !suffix.is_empty() && !TIER_SUFFIXES.contains(&suffix)),
        Vocabulary::Quantization => matches!(
            (general, specific),
            ("fp4", "mxfp4" | "nvfp4") | ("fp8", "mxfp8")
        ),
    }
}

/// An allow-list (`only`, `quantizations`): fewer entries bind tighter; unset allows everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AllowList {
    pub(crate) vocabulary: Vocabulary,
    /// `None` = unset. Never `Some(empty)`: an empty list from the client or the config is unset.
    pub(crate) entries: Option<Vec<Name>>,
}

impl AllowList {
    fn admits(&self, name: &Name) -> bool {
        self.entries.as_ref().is_none_or(|entries| {
            entries
                .iter()
                .any(|e| covers(self.vocabulary, &e.key, &name.key))
        })
    }
}

impl Strict for AllowList {
    fn at_least_as_strict_as(&self, other: &Self) -> bool {
        match &self.entries {
            None => other.entries.is_none(),
            Some(mine) => mine.iter().all(|name| other.admits(name)),
        }
    }

    fn stricter(&self, policy: &Self) -> Option<Self> {
        let (mine, theirs) = match (&self.entries, &policy.entries) {
            (_, None) => return Some(self.clone()),
            (None, Some(_)) => return Some(policy.clone()),
            (Some(mine), Some(theirs)) => (mine, theirs),
        };
        let vocabulary = self.vocabulary;
        let mut out: Vec<Name> = Vec::with_capacity(mine.len());
        for name in mine {
            if policy.admits(name) {
                // The client's entry, as the client spelled it (duplicates included, so a client
                // already inside the policy passes byte for byte).
                out.push(name.clone());
            } else {
                // The client named something broader (`deepinfra`) than the policy allows
                // (`deepinfra/turbo`): keep the policy's narrower entries it covers.
                for narrower in theirs
                    .iter()
                    .filter(|t| covers(vocabulary, &name.key, &t.key))
                {
                    if !out.iter().any(|o| o.key == narrower.key) {
                        out.push(narrower.clone());
                    }
                }
            }
        }
        (!out.is_empty()).then_some(AllowList {
            vocabulary,
            entries: Some(out),
        })
    }
}

/// A deny-list (`ignore`): more entries bind tighter; unset (empty) denies nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DenyList {
    pub(crate) vocabulary: Vocabulary,
    pub(crate) entries: Vec<Name>,
}

impl DenyList {
    fn excludes(&self, name: &Name) -> bool {
        self.entries
            .iter()
            .any(|e| covers(self.vocabulary, &e.key, &name.key))
    }

    /// The policy's entries that the union adds to this list, in the policy's order: those
    /// neither this list nor an earlier addition excludes. Empty when this list is already at
    /// least as strict; the merge then forwards it without building anything.
    pub(crate) fn additions<'p>(&self, policy: &'p Self) -> Vec<&'p Name> {
        let mut added: Vec<&Name> = Vec::new();
        for name in &policy.entries {
            let covered = self.excludes(name)
                || added
                    .iter()
                    .any(|a| covers(self.vocabulary, &a.key, &name.key));
            if !covered {
                added.push(name);
            }
        }
        added
    }
}

impl Strict for DenyList {
    fn at_least_as_strict_as(&self, other: &Self) -> bool {
        other.entries.iter().all(|name| self.excludes(name))
    }

    fn stricter(&self, policy: &Self) -> Option<Self> {
        let mut out = self.clone();
        out.entries
            .extend(self.additions(policy).into_iter().cloned());
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(names: &[&str]) -> AllowList {
        AllowList {
            vocabulary: Vocabulary::Provider,
            entries: Some(
                names
                    .iter()
                    .map(|n| Name::new(Vocabulary::Provider, n))
                    .collect(),
            ),
        }
    }

    fn spellings(list: &AllowList) -> Vec<&str> {
        list.entries
            .iter()
            .flatten()
            .map(|n| n.spelling.as_str())
            .collect()
    }

    #[test]
    fn display_names_and_slugs_are_the_same_provider() {
        assert_eq!(
            normalise(Vocabulary::Provider, "Google AI Studio"),
            "google-ai-studio"
        );
        let merged = only(&["google ai studio", "Together"])
            .stricter(&only(&["Google-AI-Studio"]))
            .unwrap();
        assert_eq!(spellings(&merged), ["google ai studio"]);
    }

    #[test]
    fn a_base_slug_covers_regions_but_not_tiers() {
        assert!(covers(Vocabulary::Provider, "deepinfra", "deepinfra/turbo"));
        assert!(!covers(Vocabulary::Provider, "openai", "openai/priority"));
        assert!(!covers(
            Vocabulary::Provider,
            "deepinfra/turbo",
            "deepinfra"
        ));
        // The client asked for the whole provider, the policy allows one region: the region.
        let merged = only(&["DeepInfra"])
            .stricter(&only(&["deepinfra/turbo", "azure"]))
            .unwrap();
        assert_eq!(spellings(&merged), ["deepinfra/turbo"]);
    }

    #[test]
    fn quantization_families_cover_their_members() {
        let q = |names: &[&str]| AllowList {
            vocabulary: Vocabulary::Quantization,
            entries: Some(
                names
                    .iter()
                    .map(|n| Name::new(Vocabulary::Quantization, n))
                    .collect(),
            ),
        };
        assert_eq!(
            spellings(&q(&["mxfp8"]).stricter(&q(&["fp8"])).unwrap()),
            ["mxfp8"]
        );
        assert_eq!(
            spellings(&q(&["fp8"]).stricter(&q(&["mxfp8", "bf16"])).unwrap()),
            ["mxfp8"]
        );
        assert!(q(&["fp4"]).stricter(&q(&["fp8"])).is_none());
    }

    #[test]
    fn unset_is_the_loosest_value() {
        assert!(Ceiling(Some(1.0)).at_least_as_strict_as(&Ceiling(None)));
        assert!(!Ceiling(None).at_least_as_strict_as(&Ceiling(Some(1.0))));
        assert!(Floor(Some(1.0)).at_least_as_strict_as(&Floor(None)));
        assert!(Required(true).at_least_as_strict_as(&Required(false)));
        assert!(!Required(false).at_least_as_strict_as(&Required(true)));
        let unset = AllowList {
            vocabulary: Vocabulary::Provider,
            entries: None,
        };
        assert!(only(&["a"]).at_least_as_strict_as(&unset));
        assert!(!unset.at_least_as_strict_as(&only(&["a"])));
    }
}

//! Cluster topology: which group of servers owns which slots.
//!
//! Proxies read it from a TOML file today; the ConfigServer will push the
//! same type. Every change carries a higher `epoch`, and a proxy never applies
//! a lower one, so a delayed or replayed update cannot roll routing back.

use serde::{Deserialize, Serialize};

use crate::NUM_SLOTS;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Monotonic version of this topology. Default 0.
    #[serde(default)]
    pub epoch: u64,
    pub groups: Vec<Group>,
}

/// One master and its replicas; groups never talk to each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Defaults to `g<index>`.
    #[serde(default)]
    pub name: String,
    /// `host:port`; the host may be a DNS name.
    pub master: String,
    #[serde(default)]
    pub replicas: Vec<Replica>,
    /// Slot ranges such as `"0-511"` or `"7"`.
    pub slots: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replica {
    pub addr: String,
    /// Availability zone, for zone-aware reads. Default empty.
    #[serde(default)]
    pub zone: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopologyError {
    #[error("topology: {0}")]
    Toml(String),
    #[error("topology has no groups")]
    NoGroups,
    #[error("group {group}: bad slot range '{range}' (expected N or N-M within 0-1023)")]
    BadRange { group: String, range: String },
    #[error("slot {slot} is owned by both {a} and {b}")]
    Overlap { slot: u16, a: String, b: String },
    #[error("slots not owned by any group: {0}")]
    Missing(String),
    #[error("group {group}: bad address '{addr}' (expected host:port)")]
    BadAddr { group: String, addr: String },
    #[error("duplicate group name {0}")]
    DuplicateName(String),
}

/// Parses `"N"` or `"N-M"` into an inclusive range inside the slot space.
pub fn parse_slot_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = match s.trim().split_once('-') {
        Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
        None => {
            let n = s.trim().parse().ok()?;
            (n, n)
        }
    };
    (a <= b && (b as usize) < NUM_SLOTS).then_some((a, b))
}

fn addr_ok(addr: &str) -> bool {
    match addr.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.contains(char::is_whitespace)
                && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        None => false,
    }
}

/// Compresses sorted slot numbers into `"a-b"` ranges for messages.
pub fn ranges_text(slots: &[u16]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < slots.len() {
        let start = slots[i];
        while i + 1 < slots.len() && slots[i + 1] == slots[i] + 1 {
            i += 1;
        }
        out.push(if start == slots[i] {
            start.to_string()
        } else {
            format!("{start}-{}", slots[i])
        });
        i += 1;
    }
    out.join(",")
}

impl Topology {
    pub fn from_toml_str(s: &str) -> Result<Topology, TopologyError> {
        let mut t: Topology = toml::from_str(s).map_err(|e| TopologyError::Toml(e.to_string()))?;
        t.fill_names();
        t.validate()?;
        Ok(t)
    }

    /// The 1024 slots spread evenly over `masters`, in order (the first groups
    /// take one extra slot when the division is not exact).
    pub fn even(masters: &[String]) -> Result<Topology, TopologyError> {
        let n = masters.len();
        if n == 0 {
            return Err(TopologyError::NoGroups);
        }
        let mut start = 0;
        let groups = masters
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let len = NUM_SLOTS / n + usize::from(i < NUM_SLOTS % n);
                let g = Group {
                    name: format!("g{i}"),
                    master: m.clone(),
                    replicas: Vec::new(),
                    slots: vec![format!("{start}-{}", start + len - 1)],
                };
                start += len;
                g
            })
            .collect();
        let t = Topology { epoch: 1, groups };
        t.validate()?;
        Ok(t)
    }

    fn fill_names(&mut self) {
        for (i, g) in self.groups.iter_mut().enumerate() {
            if g.name.is_empty() {
                g.name = format!("g{i}");
            }
        }
    }

    /// Every slot owned exactly once, every address `host:port`, names unique.
    pub fn validate(&self) -> Result<(), TopologyError> {
        self.slot_owners().map(|_| ())
    }

    /// Group index of every slot.
    pub fn slot_owners(&self) -> Result<Vec<u16>, TopologyError> {
        if self.groups.is_empty() {
            return Err(TopologyError::NoGroups);
        }
        let mut owner: Vec<Option<u16>> = vec![None; NUM_SLOTS];
        for (gi, g) in self.groups.iter().enumerate() {
            if self.groups[..gi].iter().any(|o| o.name == g.name) {
                return Err(TopologyError::DuplicateName(g.name.clone()));
            }
            let addrs = std::iter::once(&g.master).chain(g.replicas.iter().map(|r| &r.addr));
            for a in addrs {
                if !addr_ok(a) {
                    return Err(TopologyError::BadAddr {
                        group: g.name.clone(),
                        addr: a.clone(),
                    });
                }
            }
            for r in &g.slots {
                let Some((a, b)) = parse_slot_range(r) else {
                    return Err(TopologyError::BadRange {
                        group: g.name.clone(),
                        range: r.clone(),
                    });
                };
                for s in a..=b {
                    if let Some(prev) = owner[s as usize] {
                        return Err(TopologyError::Overlap {
                            slot: s,
                            a: self.groups[prev as usize].name.clone(),
                            b: g.name.clone(),
                        });
                    }
                    owner[s as usize] = Some(gi as u16);
                }
            }
        }
        let missing: Vec<u16> = (0..NUM_SLOTS as u16)
            .filter(|&s| owner[s as usize].is_none())
            .collect();
        if !missing.is_empty() {
            return Err(TopologyError::Missing(ranges_text(&missing)));
        }
        Ok(owner.into_iter().map(|o| o.expect("checked")).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_split_covers_every_slot_in_order() {
        let t = Topology::even(&["a:1".into(), "b:2".into(), "c:3".into()]).unwrap();
        assert_eq!(t.groups[0].slots, vec!["0-341"]);
        assert_eq!(t.groups[1].slots, vec!["342-682"]);
        assert_eq!(t.groups[2].slots, vec!["683-1023"]);
        let owners = t.slot_owners().unwrap();
        assert_eq!(
            (owners[0], owners[341], owners[342], owners[1023]),
            (0, 0, 1, 2)
        );
    }

    #[test]
    fn file_errors_name_the_problem() {
        let two = |a: &str, b: &str| {
            format!(
                "[[groups]]\nmaster = \"h:1\"\nslots = [{a}]\n[[groups]]\nmaster = \"h:2\"\nslots = [{b}]\n"
            )
        };
        let ok = Topology::from_toml_str(&two("\"0-511\"", "\"512-1023\"")).unwrap();
        assert_eq!((ok.groups[0].name.as_str(), ok.epoch), ("g0", 0));
        assert_eq!(
            Topology::from_toml_str(&two("\"0-600\"", "\"512-1023\"")).unwrap_err(),
            TopologyError::Overlap {
                slot: 512,
                a: "g0".into(),
                b: "g1".into()
            }
        );
        assert_eq!(
            Topology::from_toml_str(&two("\"0-500\"", "\"512-1000\"")).unwrap_err(),
            TopologyError::Missing("501-511,1001-1023".into())
        );
        assert!(matches!(
            Topology::from_toml_str(&two("\"0-1024\"", "\"5\"")).unwrap_err(),
            TopologyError::BadRange { .. }
        ));
        let bad = "[[groups]]\nmaster = \"nohost\"\nslots = [\"0-1023\"]\n";
        assert!(matches!(
            Topology::from_toml_str(bad).unwrap_err(),
            TopologyError::BadAddr { .. }
        ));
        assert!(matches!(
            Topology::from_toml_str("groups = 3").unwrap_err(),
            TopologyError::Toml(_)
        ));
    }
}

//! Generated names (`adjective_surname`, as Docker makes them) and ids.

use std::io::Read;

const ADJECTIVES: &[&str] = &[
    "admiring",
    "adoring",
    "affectionate",
    "agitated",
    "amazing",
    "angry",
    "awesome",
    "beautiful",
    "blissful",
    "bold",
    "boring",
    "brave",
    "busy",
    "charming",
    "clever",
    "cool",
    "compassionate",
    "competent",
    "confident",
    "cranky",
    "crazy",
    "dazzling",
    "determined",
    "distracted",
    "dreamy",
    "eager",
    "ecstatic",
    "elastic",
    "elated",
    "elegant",
    "eloquent",
    "epic",
    "exciting",
    "fervent",
    "festive",
    "flamboyant",
    "focused",
    "friendly",
    "frosty",
    "funny",
    "gallant",
    "gifted",
    "goofy",
    "gracious",
    "great",
    "happy",
    "hardcore",
    "heuristic",
    "hopeful",
    "hungry",
    "infallible",
    "inspiring",
    "intelligent",
    "interesting",
    "jolly",
    "jovial",
    "keen",
    "kind",
    "laughing",
    "loving",
    "lucid",
    "magical",
    "modest",
    "musing",
    "mystifying",
    "naughty",
    "nervous",
    "nice",
    "nifty",
    "nostalgic",
    "objective",
    "optimistic",
    "peaceful",
    "pedantic",
    "pensive",
    "practical",
    "priceless",
    "quirky",
    "quizzical",
    "recursing",
    "relaxed",
    "reverent",
    "romantic",
    "sad",
    "serene",
    "sharp",
    "silly",
    "sleepy",
    "stoic",
    "strange",
    "stupefied",
    "suspicious",
    "sweet",
    "tender",
    "thirsty",
    "trusting",
    "unruffled",
    "upbeat",
    "vibrant",
    "vigilant",
    "vigorous",
    "wizardly",
    "wonderful",
    "xenodochial",
    "youthful",
    "zealous",
    "zen",
];

/// Scientists and engineers, as in Docker's list.
const SURNAMES: &[&str] = &[
    "agnesi",
    "albattani",
    "allen",
    "archimedes",
    "ardinghelli",
    "babbage",
    "banach",
    "bardeen",
    "bartik",
    "bell",
    "benz",
    "bhabha",
    "blackwell",
    "bohr",
    "booth",
    "borg",
    "bose",
    "brahmagupta",
    "brattain",
    "brown",
    "carson",
    "cerf",
    "chandrasekhar",
    "clarke",
    "curie",
    "darwin",
    "davinci",
    "dijkstra",
    "einstein",
    "elion",
    "engelbart",
    "euclid",
    "euler",
    "faraday",
    "fermat",
    "fermi",
    "feynman",
    "franklin",
    "galileo",
    "gates",
    "goldberg",
    "goodall",
    "hamilton",
    "hawking",
    "heisenberg",
    "hertz",
    "hodgkin",
    "hopper",
    "hypatia",
    "jackson",
    "jennings",
    "johnson",
    "kalam",
    "kepler",
    "khorana",
    "knuth",
    "kowalevski",
    "lalande",
    "lamarr",
    "leakey",
    "leavitt",
    "lovelace",
    "lumiere",
    "mayer",
    "mccarthy",
    "mcclintock",
    "meitner",
    "mendel",
    "minsky",
    "mirzakhani",
    "montalcini",
    "moore",
    "morse",
    "napier",
    "nash",
    "newton",
    "nobel",
    "noether",
    "pare",
    "pascal",
    "pasteur",
    "payne",
    "perlman",
    "pike",
    "poincare",
    "ptolemy",
    "raman",
    "ramanujan",
    "ride",
    "ritchie",
    "rosalind",
    "sammet",
    "shannon",
    "shockley",
    "sinoussi",
    "stonebraker",
    "swanson",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "villani",
    "wescoff",
    "wiles",
    "williams",
    "wilson",
    "wing",
    "wozniak",
    "wright",
    "yalow",
    "yonath",
];

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf
}

/// A 64-hex container id.
pub fn new_id() -> String {
    random_bytes::<32>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `adjective_surname`, with a digit added on a retry, as Docker does.
pub fn generate(retry: u32) -> String {
    let r = random_bytes::<4>();
    let a = ADJECTIVES[(r[0] as usize | (r[1] as usize) << 8) % ADJECTIVES.len()];
    let s = SURNAMES[(r[2] as usize | (r[3] as usize) << 8) % SURNAMES.len()];
    // Docker never names a container boring_wozniak.
    if a == "boring" && s == "wozniak" {
        return generate(retry);
    }
    if retry > 0 {
        format!("{a}_{s}{}", r[0] % 10)
    } else {
        format!("{a}_{s}")
    }
}

/// Docker's rule for a name given with `--name`.
pub fn valid(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() > 1
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids() {
        let n = generate(0);
        let (a, s) = n.split_once('_').unwrap();
        assert!(ADJECTIVES.contains(&a) && SURNAMES.contains(&s));
        assert_eq!(new_id().len(), 64);
        assert!(valid("web-1.a_b"));
        assert!(!valid("-web") && !valid("a") && !valid("we b") && !valid("/x"));
    }
}

//! eSpeak NG's phonemes, as Piper voices read them. The library (`libespeak-ng`, GPL-3.0)
//! is opened at run time, like ONNX Runtime, so that Troupe neither links it nor needs it
//! to build or start: only a node with a Piper voice configured looks for it. eSpeak NG
//! keeps one global state, so a process opens it once and phonemizes under a lock.
//!
//! Piper's own bridge asks eSpeak NG for each clause's terminator
//! (`espeak_TextToPhonemesWithTerminator`, which the eSpeak NG 1.51 of Debian 12 lacks);
//! here the terminator is read from the text eSpeak NG consumed for the clause instead
//! ([`clause_end`]), which gives the same phonemes as Piper on the test corpus.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use unicode_normalization::UnicodeNormalization;

/// The library's file name on Linux.
pub const ESPEAK_LIBRARY: &str = "libespeak-ng.so.1";

/// `AUDIO_OUTPUT_SYNCHRONOUS`: no audio device, no thread of eSpeak NG's own.
const AUDIO_OUTPUT_SYNCHRONOUS: c_int = 2;
/// `espeakINITIALIZE_DONT_EXIT`: a data error is returned, not `exit()`ed.
const INITIALIZE_DONT_EXIT: c_int = 0x8000;
/// `espeakCHARS_UTF8`.
const CHARS_UTF8: c_int = 1;
/// `espeakPHONEMES_IPA`.
const PHONEMES_IPA: c_int = 0x02;

type Initialize = unsafe extern "C" fn(c_int, c_int, *const c_char, c_int) -> c_int;
type SetVoiceByName = unsafe extern "C" fn(*const c_char) -> c_int;
type TextToPhonemes = unsafe extern "C" fn(*mut *const c_void, c_int, c_int) -> *const c_char;

/// Why eSpeak NG could not phonemize.
#[derive(Debug, thiserror::Error)]
pub enum EspeakError {
    #[error(
        "cannot open eSpeak NG ({library}): {source}; install it (Debian: apt install libespeak-ng1) or set [voice] espeak_library"
    )]
    Open {
        library: PathBuf,
        #[source]
        source: libloading::Error,
    },
    #[error("eSpeak NG could not start with its data in {data}")]
    Initialize { data: String },
    #[error("eSpeak NG is already open with its data in {open}, not {asked}")]
    OtherData { open: String, asked: String },
    #[error("eSpeak NG has no voice `{0}`")]
    NoVoice(String),
    #[error("the text holds a NUL character")]
    Nul(#[from] std::ffi::NulError),
}

/// Where eSpeak NG's library and data are (`None`: the system's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EspeakPaths {
    pub library: Option<PathBuf>,
    pub data: Option<PathBuf>,
}

impl EspeakPaths {
    fn data_name(&self) -> String {
        self.data.as_ref().map_or_else(
            || "the system's folder".to_owned(),
            |data| data.display().to_string(),
        )
    }
}

/// The opened library.
struct Library {
    set_voice: SetVoiceByName,
    text_to_phonemes: TextToPhonemes,
    /// The voice set last (setting one reads its files, so it is set only when it changes).
    voice: Option<CString>,
    /// Keeps the functions above valid.
    _library: libloading::Library,
}

/// eSpeak NG, open in this process.
pub struct Espeak {
    paths: EspeakPaths,
    library: Mutex<Library>,
}

/// eSpeak NG in this process, once opened.
static OPEN: Mutex<Option<Arc<Espeak>>> = Mutex::new(None);

impl Espeak {
    /// Opens eSpeak NG for this process (once: later calls answer the same one, if they
    /// ask for the same data).
    pub fn open(paths: &EspeakPaths) -> Result<Arc<Self>, EspeakError> {
        let mut open = OPEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(opened) = open.as_ref() {
            return if opened.paths.data == paths.data {
                Ok(Arc::clone(opened))
            } else {
                Err(EspeakError::OtherData {
                    open: opened.paths.data_name(),
                    asked: paths.data_name(),
                })
            };
        }
        let espeak = Arc::new(Self {
            paths: paths.clone(),
            library: Mutex::new(Library::open(paths)?),
        });
        *open = Some(Arc::clone(&espeak));
        Ok(espeak)
    }

    /// `text`'s phonemes in `voice`, a list per sentence, each phoneme one code point
    /// (decomposed, NFD), with Piper's punctuation kept.
    pub fn phonemize(&self, voice: &str, text: &str) -> Result<Vec<Vec<char>>, EspeakError> {
        let voice_name = CString::new(voice)?;
        let text = CString::new(text)?;
        let mut library = self
            .library
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if library.voice.as_ref() != Some(&voice_name) {
            library.voice = None;
            // SAFETY: a NUL-terminated string that outlives the call.
            if unsafe { (library.set_voice)(voice_name.as_ptr()) } != 0 {
                return Err(EspeakError::NoVoice(voice.to_owned()));
            }
            library.voice = Some(voice_name);
        }
        let bytes = text.as_bytes();
        let start = text.as_ptr();
        let mut pointer: *const c_void = start.cast();
        let mut consumed_to = 0;
        let mut sentences = Sentences::default();
        while !pointer.is_null() {
            // SAFETY: `pointer` points into `text`, which lives to the end of this call;
            // eSpeak NG moves it to the next clause, or sets it to null at the end.
            let phonemes =
                unsafe { (library.text_to_phonemes)(&mut pointer, CHARS_UTF8, PHONEMES_IPA) };
            let at_end = pointer.is_null();
            let next = if at_end {
                bytes.len()
            } else {
                // SAFETY: both pointers are into `text`.
                usize::try_from(unsafe { pointer.cast::<c_char>().offset_from(start) })
                    .unwrap_or(bytes.len())
                    .min(bytes.len())
            };
            let clause = String::from_utf8_lossy(&bytes[consumed_to.min(next)..next]);
            consumed_to = next;
            let phonemes = if phonemes.is_null() {
                String::new()
            } else {
                // SAFETY: eSpeak NG answers a NUL-terminated string it owns until the next call.
                unsafe { CStr::from_ptr(phonemes) }
                    .to_string_lossy()
                    .into_owned()
            };
            sentences.add(&phonemes, clause_end(&clause, at_end));
        }
        Ok(sentences.finish())
    }
}

impl Library {
    fn open(paths: &EspeakPaths) -> Result<Self, EspeakError> {
        let file = paths
            .library
            .clone()
            .unwrap_or_else(|| PathBuf::from(ESPEAK_LIBRARY));
        let open_error = |source| EspeakError::Open {
            library: file.clone(),
            source,
        };
        // SAFETY: loading eSpeak NG runs no initialisers with preconditions.
        let library = unsafe { libloading::Library::new(&file) }.map_err(open_error)?;
        // SAFETY: the signatures are speak_lib.h's for these names.
        let (initialize, set_voice, text_to_phonemes) = unsafe {
            (
                *library
                    .get::<Initialize>(b"espeak_Initialize\0")
                    .map_err(open_error)?,
                *library
                    .get::<SetVoiceByName>(b"espeak_SetVoiceByName\0")
                    .map_err(open_error)?,
                *library
                    .get::<TextToPhonemes>(b"espeak_TextToPhonemes\0")
                    .map_err(open_error)?,
            )
        };
        let data = paths.data.as_deref().map(path_string).transpose()?;
        let data_pointer = data.as_ref().map_or(std::ptr::null(), |data| data.as_ptr());
        // SAFETY: a null or NUL-terminated path; eSpeak NG copies it.
        let rate = unsafe {
            initialize(
                AUDIO_OUTPUT_SYNCHRONOUS,
                0,
                data_pointer,
                INITIALIZE_DONT_EXIT,
            )
        };
        if rate <= 0 {
            return Err(EspeakError::Initialize {
                data: paths.data_name(),
            });
        }
        Ok(Self {
            set_voice,
            text_to_phonemes,
            voice: None,
            _library: library,
        })
    }
}

fn path_string(path: &Path) -> Result<CString, EspeakError> {
    Ok(CString::new(path.as_os_str().as_encoded_bytes())?)
}

/// How a clause ended, as Piper keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ClauseEnd {
    /// The punctuation Piper puts after the clause's phonemes, if any.
    mark: Option<char>,
    /// Whether the clause ends a sentence.
    sentence: bool,
}

/// How the clause eSpeak NG read from `consumed` ended. eSpeak NG reads one character past
/// a clause before it answers (unless the text ended), so that character is not the
/// clause's. An ellipsis does not end a clause for Piper; a dash ends it as a semicolon.
fn clause_end(consumed: &str, at_end: bool) -> ClauseEnd {
    let mut clause = consumed;
    if !at_end {
        let mut chars = clause.chars();
        chars.next_back();
        clause = chars.as_str();
    }
    let clause = clause.trim_end();
    let mark = if clause.ends_with("...") || clause.ends_with('…') {
        None
    } else {
        match clause.chars().next_back() {
            Some(mark @ ('.' | '?' | '!' | ',' | ':' | ';')) => Some(mark),
            Some('—' | '–') => Some(';'),
            _ => None,
        }
    };
    ClauseEnd {
        mark,
        sentence: matches!(mark, Some('.' | '?' | '!')),
    }
}

/// Clauses' phonemes gathered into sentences.
#[derive(Default)]
struct Sentences {
    done: Vec<Vec<char>>,
    current: Vec<char>,
}

impl Sentences {
    fn add(&mut self, phonemes: &str, end: ClauseEnd) {
        let mut clause = without_language_switches(phonemes);
        if let Some(mark) = end.mark {
            clause.push(mark);
            if matches!(mark, ',' | ':' | ';') {
                clause.push(' ');
            }
        }
        self.current.extend(clause.nfd());
        if end.sentence {
            self.done.push(std::mem::take(&mut self.current));
        }
    }

    fn finish(mut self) -> Vec<Vec<char>> {
        if !self.current.is_empty() {
            self.done.push(self.current);
        }
        self.done
    }
}

/// `phonemes` without eSpeak NG's language-switch marks, `(en)`, around foreign words.
fn without_language_switches(phonemes: &str) -> String {
    let mut kept = String::with_capacity(phonemes.len());
    let mut rest = phonemes;
    while let Some(open) = rest.find('(') {
        match rest[open..].find(')') {
            Some(close) if close > 1 => {
                kept.push_str(&rest[..open]);
                rest = &rest[open + close + 1..];
            }
            _ => {
                kept.push_str(&rest[..=open]);
                rest = &rest[open + 1..];
            }
        }
    }
    kept.push_str(rest);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clause_ends_at_its_punctuation_not_at_the_character_read_after_it() {
        assert_eq!(
            clause_end("Hello, w", false),
            ClauseEnd {
                mark: Some(','),
                sentence: false
            }
        );
        assert_eq!(
            clause_end("today? H", false),
            ClauseEnd {
                mark: Some('?'),
                sentence: true
            }
        );
        assert_eq!(
            clause_end("four.", true),
            ClauseEnd {
                mark: Some('.'),
                sentence: true
            }
        );
    }

    #[test]
    fn an_ellipsis_does_not_end_a_sentence_and_a_dash_is_a_semicolon() {
        assert_eq!(clause_end("Well... o", false).mark, None);
        assert!(!clause_end("Well... o", false).sentence);
        assert_eq!(clause_end("no\" — t", false).mark, Some(';'));
        assert_eq!(clause_end("no punctuation", true).mark, None);
    }

    #[test]
    fn clauses_gather_into_sentences_with_piper_punctuation() {
        let mut sentences = Sentences::default();
        sentences.add("həlˈoʊ", clause_end("Hello, w", false));
        sentences.add("wˈɜːld", clause_end("orld! H", false));
        sentences.add("(fr)bɔ̃ʒˈuʁ(en)", clause_end("ow", true));
        let text: Vec<String> = sentences
            .finish()
            .into_iter()
            .map(|sentence| sentence.into_iter().collect())
            .collect();
        assert_eq!(text, ["həlˈoʊ, wˈɜːld!", "bɔ̃ʒˈuʁ"]);
    }

    #[test]
    fn phonemes_are_decomposed_into_code_points() {
        let mut sentences = Sentences::default();
        sentences.add("\u{e7}", clause_end("x", true));
        assert_eq!(sentences.finish(), [vec!['c', '\u{327}']]);
    }
}

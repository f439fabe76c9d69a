//! [`SpeechSegmenter`]: speech probabilities, frame by frame, into the start and end of an
//! utterance.

/// The start or the end of an utterance, in frames since the stream began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpeechEdge {
    Started { frame: u64 },
    Ended { frame: u64 },
}

/// Turns speech probabilities, frame by frame, into utterances: speech starts at a frame
/// above `threshold` and ends after `min_silence_frames` below `threshold - 0.15`; an
/// utterance shorter than `min_speech_frames` is dropped as a click or a cough.
#[derive(Clone, Debug)]
pub struct SpeechSegmenter {
    threshold: f32,
    min_speech_frames: u64,
    min_silence_frames: u64,
    frame: u64,
    started: Option<u64>,
    /// Whether the utterance under way was announced (it lasted long enough).
    announced: bool,
    silent_since: Option<u64>,
}

impl SpeechSegmenter {
    /// Silero's defaults: a threshold of 0.5, 250 ms of speech at least, and an utterance
    /// ends after 500 ms of silence.
    pub fn new() -> Self {
        Self::with(0.5, 8, 16)
    }

    pub fn with(threshold: f32, min_speech_frames: u64, min_silence_frames: u64) -> Self {
        Self {
            threshold,
            min_speech_frames,
            min_silence_frames,
            frame: 0,
            started: None,
            announced: false,
            silent_since: None,
        }
    }

    /// Forgets the utterance under way (one cut short); frames go on being counted.
    pub fn cut(&mut self) {
        self.started = None;
        self.announced = false;
        self.silent_since = None;
    }

    /// Takes the next frame's probability; answers an edge when one is crossed (an end
    /// names the frame where the silence began).
    pub fn push(&mut self, probability: f32) -> Option<SpeechEdge> {
        let frame = self.frame;
        self.frame += 1;
        let Some(started) = self.started else {
            if probability >= self.threshold {
                self.started = Some(frame);
                self.silent_since = None;
            }
            return None;
        };
        if probability >= self.threshold - 0.15 {
            self.silent_since = None;
            if !self.announced && frame + 1 - started >= self.min_speech_frames {
                self.announced = true;
                return Some(SpeechEdge::Started { frame: started });
            }
            return None;
        }
        let silent_since = *self.silent_since.get_or_insert(frame);
        if frame + 1 - silent_since < self.min_silence_frames {
            return None;
        }
        let announced = std::mem::take(&mut self.announced);
        self.started = None;
        self.silent_since = None;
        announced.then_some(SpeechEdge::Ended {
            frame: silent_since,
        })
    }
}

impl Default for SpeechSegmenter {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edges(probabilities: &[f32]) -> Vec<SpeechEdge> {
        let mut segmenter = SpeechSegmenter::with(0.5, 3, 4);
        probabilities
            .iter()
            .filter_map(|probability| segmenter.push(*probability))
            .collect()
    }

    #[test]
    fn an_utterance_starts_once_it_is_long_enough_and_ends_after_enough_silence() {
        let mut frames = vec![0.1; 5];
        frames.extend([0.9, 0.8, 0.4, 0.9, 0.1, 0.9]); // a dip to 0.4 is still speech
        frames.extend([0.1; 6]);
        assert_eq!(
            edges(&frames),
            [
                SpeechEdge::Started { frame: 5 },
                SpeechEdge::Ended { frame: 11 }
            ]
        );
    }

    #[test]
    fn a_click_is_not_an_utterance_and_silence_is_nothing() {
        let mut frames = vec![0.1, 0.9, 0.9];
        frames.extend([0.0; 8]);
        assert!(edges(&frames).is_empty());
        assert!(edges(&[0.0; 100]).is_empty());
    }

    #[test]
    fn speech_that_pauses_briefly_before_it_is_long_enough_still_starts() {
        // Speech, a pause shorter than the silence that ends it, more speech.
        let frames = [0.9, 0.9, 0.1, 0.9, 0.9, 0.0, 0.0, 0.0, 0.0];
        assert_eq!(
            edges(&frames),
            [
                SpeechEdge::Started { frame: 0 },
                SpeechEdge::Ended { frame: 5 }
            ]
        );
    }
}

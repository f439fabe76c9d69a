// The microphone's audio worklet (served as /app/microphone-worklet.js): turns what the
// microphone hears, at the audio context's rate, into 16 kHz mono PCM16 (each output
// sample the mean of the input samples it stands for, which keeps the voice band clean)
// and posts it to the page in blocks of 100 ms, as the WebSocket's binary frames carry it.

const OUTPUT_RATE = 16000;
const BLOCK = 1600;

class TroupeMicrophone extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / OUTPUT_RATE;
    this.block = new Int16Array(BLOCK);
    this.filled = 0;
    this.sum = 0;
    this.count = 0;
    this.position = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    for (let index = 0; index < channel.length; index++) {
      this.sum += channel[index];
      this.count += 1;
      this.position += 1;
      if (this.position < this.step) continue;
      this.position -= this.step;
      const sample = Math.max(-1, Math.min(1, this.sum / this.count));
      this.sum = 0;
      this.count = 0;
      this.block[this.filled++] = Math.round(sample * 32767);
      if (this.filled === BLOCK) {
        const full = this.block;
        this.port.postMessage(full.buffer, [full.buffer]);
        this.block = new Int16Array(BLOCK);
        this.filled = 0;
      }
    }
    return true;
  }
}

registerProcessor("troupe-microphone", TroupeMicrophone);

"""AudioMix: the audio mixer's math for one 20 ms tick; TalkerSelection and
VoiceActivity on its levels (`level_dbov` measures one input's).

Pure numpy: no asyncio, no I/O, no frame source. A MixedStream calls `AudioMix.mix`
every 20 ms with the newest decoded frame of each input (48 kHz, int16 interleaved
as aiortc/Opus produce it) and the talkers `TalkerSelection` chose from the previous
tick's levels, and feeds `MixResult.levels` to both `TalkerSelection.update` and
`VoiceActivity.update`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Int16Array = npt.NDArray[np.int16]

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960  # per channel: 20 ms at 48 kHz
INT16_MAX = 32767

# Levels are in dBov (RFC 6464): 0 dBov is a full-scale square wave, so a
# full-scale sine reads -3 dBov; -127 is the floor (digital silence).
MIN_DBOV = -127.0
_FULL_SCALE_POWER = 32768.0 * 32768.0

# Limiter. Every output is limited on its own (the full mix and each mix-minus
# carry different sums), in two stages:
#  1. a gain stage per output: the frame's peak sets a target gain that brings it
#     down to the knee; the gain falls fast (ramped over ~1.5 ms, no click) and
#     recovers slowly (~150 ms time constant, no pumping between syllables).
#     Linked across channels so that the stereo image does not move.
#  2. a memoryless tanh knee above -3 dBFS that catches what the gain ramp lets
#     through (the first samples of a sudden peak). It is continuous with slope 1
#     at the knee and approaches full scale without ever reaching past it, so the
#     result never needs hard clipping and never wraps.
# Quiet ticks (every output's peak under the knee, gains at unity) skip both.
KNEE = INT16_MAX * 10.0 ** (-3.0 / 20.0)  # -3 dBFS
ATTACK_MS = 1.5
RELEASE_MS = 150.0
# Gain state of an input's mix-minus outlives a few missing ticks (packet loss,
# DTX) so that its level does not jump back to unity; then it is dropped.
STATE_TTL_TICKS = 250  # 5 s


def level_dbov(samples: Int16Array) -> float:
    """RMS level of int16 samples in dBov (-127..0), as `MixResult.levels` measures it."""
    data = np.asarray(samples, np.float32).reshape(-1)
    if not data.size:
        return MIN_DBOV
    power = float(np.dot(data, data)) / (data.size * _FULL_SCALE_POWER)
    if power <= 0.0:
        return MIN_DBOV
    return min(0.0, max(MIN_DBOV, 10.0 * math.log10(power)))


@dataclass
class MixResult:
    """The outputs of one tick: flat int16 arrays of `samples * channels` values."""

    full: Int16Array  # every mixed talker: for listeners and recordings
    # The full mix but that input, for each input heard in `full` this tick.
    minus: dict[str, Int16Array] = field(default_factory=dict)
    levels: dict[str, float] = field(default_factory=dict)  # every input's RMS, dBov (-127..0)


class AudioMix:
    """Mixes one 20 ms tick: one shared mix for listeners and a mix-minus per
    input heard in it (everyone but themselves).

    Inputs are flat (or `(1, n)` packed) int16 arrays of `samples` (mono) or
    `samples * 2` (stereo, interleaved) values; they are converted to the mix's
    channel count. `mix(inputs, talkers)` sums only the inputs in `talkers`
    (all of them when `talkers` is None); every input's level is measured.
    An input that joins the talkers fades in over the tick, one that leaves
    fades out over the next tick (heard, so it still gets its mix-minus then):
    no step in anyone's signal. The sum is taken once in int32 and each
    mix-minus is that sum minus the input's own contribution, which costs one
    subtraction per talker instead of a sum per talker. An input not heard in a
    tick gets no mix-minus: `full` does not contain it, so `full` is the right
    thing to send it then.

    Holds limiter state between ticks, so use one instance per mixed stream, from
    one thread at a time.
    """

    def __init__(
        self,
        channels: int = 2,
        samples: int = FRAME_SAMPLES,
        *,
        selection: TalkerSelection | None = None,
    ) -> None:
        if channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, not {channels}")
        if samples <= 0:
            raise ValueError(f"samples must be positive, not {samples}")
        self.channels = channels
        self.samples = samples
        self.frame_length = samples * channels
        self.selection = selection
        # Work buffers, grown (never shrunk) when more inputs arrive: row i of
        # _stack holds input i converted to the mix layout; row 0 of _out is the
        # full mix and row i + 1 the mix-minus of input i.
        # _signal, _envelope, _scratch and _over are the limiter's float work.
        self._capacity = 0
        self._stack: Int16Array
        self._out: npt.NDArray[np.int32]
        self._signal: npt.NDArray[np.float32]
        self._envelope: npt.NDArray[np.float32]
        self._scratch: npt.NDArray[np.float32]
        self._over: npt.NDArray[np.bool_]
        self._grow(8)
        # Limiter state: gain per output, and the tick an input was last seen.
        self._full_gain = 1.0
        self._gain: dict[str, float] = {}
        self._last_seen: dict[str, int] = {}
        self._tick = 0
        # The previous tick's talkers (None: everyone), to fade joiners and leavers.
        self._talkers: set[str] | None = None
        frame_ms = 1000.0 * samples / SAMPLE_RATE
        self._release = 1.0 - math.exp(-frame_ms / RELEASE_MS)
        attack_len = max(1, round(ATTACK_MS * SAMPLE_RATE / 1000.0))
        # Gain ramps over one frame, each value repeated per channel (interleaved)
        # so that the envelope multiplies the frame with contiguous loops.
        position = np.repeat(np.arange(1, samples + 1, dtype=np.float32), channels)
        self._attack_ramp = np.minimum(position / attack_len, 1.0).astype(np.float32)
        self._release_ramp = (position / samples).astype(np.float32)
        # Fades of a talker joining (0 -> 1 over the frame) or leaving (1 -> 0), in
        # int32 fixed point (Q15) so that the mix stays integer arithmetic.
        self._fade_in = np.rint(self._release_ramp * 32768).astype(np.int32)
        self._fade_out = (32768 - self._fade_in).astype(np.int32)

    def _grow(self, inputs: int) -> None:
        capacity = max(inputs, 2 * self._capacity)
        shape = (capacity + 1, self.frame_length)
        self._stack = np.zeros((capacity, self.frame_length), np.int16)
        self._out = np.zeros(shape, np.int32)
        self._signal = np.zeros(shape, np.float32)
        self._envelope = np.zeros(shape, np.float32)
        self._scratch = np.zeros(shape, np.float32)
        self._over = np.zeros(shape, np.bool_)
        self._capacity = capacity

    def _load(self, row: Int16Array, frame: Int16Array, input_id: str) -> None:
        """Copy one input into its stack row, converting the channel count."""
        data = np.asarray(frame)
        if data.dtype != np.int16:
            raise ValueError(f"input {input_id!r}: expected int16 samples, got {data.dtype}")
        data = data.reshape(-1)
        if data.size == self.frame_length:
            row[:] = data
        elif self.channels == 2 and data.size == self.samples:
            # Mono into stereo: the same signal in both channels.
            row.reshape(self.samples, 2)[:] = data[:, np.newaxis]
        elif self.channels == 1 and data.size == 2 * self.samples:
            # Stereo into mono: the average of both channels (floor division
            # keeps it within int16).
            pairs = data.reshape(self.samples, 2).astype(np.int32)
            row[:] = (pairs[:, 0] + pairs[:, 1]) >> 1
        else:
            raise ValueError(
                f"input {input_id!r}: expected {self.samples} or {2 * self.samples} "
                f"samples, got {data.size}"
            )

    def mix(
        self, inputs: Mapping[str, Int16Array], talkers: Collection[str] | None = None
    ) -> MixResult:
        """Mix one tick of the `talkers` among `inputs`.

        Without `talkers`, this mix's `selection` chooses them from this tick's
        levels (so a new talker is heard from its first tick on); without a
        selection every input is a talker. Raises ValueError (before touching
        any state) on a bad frame.
        """
        ids = list(inputs)
        n = len(ids)
        if n > self._capacity:
            self._grow(n)
        stack = self._stack[:n]
        for i, input_id in enumerate(ids):
            self._load(stack[i], inputs[input_id], input_id)

        levels = self._levels(stack, ids)
        if talkers is None and self.selection is not None:
            talkers = self.selection.update(levels)

        # Heard this tick: the talkers, and the ones that just stopped being
        # talkers (fading out). Rows in input order keep the sum deterministic.
        everyone = talkers is None
        selected = set(ids) if talkers is None else set(talkers)
        before = self._talkers  # the previous tick's choice (None: everyone)
        heard = [
            i
            for i, input_id in enumerate(ids)
            if input_id in selected or (before is not None and input_id in before)
        ]
        heard_ids = [ids[i] for i in heard]
        out = self._out[: len(heard) + 1]
        for row, i in enumerate(heard):
            input_id = ids[i]
            target = out[row + 1]
            if input_id not in selected:
                fade: npt.NDArray[np.int32] | None = self._fade_out
            elif not everyone and before is not None and input_id not in before:
                fade = self._fade_in
            else:
                fade = None
            if fade is None:
                target[:] = stack[i]
            else:
                np.multiply(stack[i], fade, out=target)
                target >>= 15
        np.sum(out[1:], axis=0, dtype=np.int32, out=out[0])
        np.subtract(out[0], out[1:], out=out[1:])
        self._talkers = None if everyone else selected

        self._tick += 1
        for input_id in ids:
            self._last_seen[input_id] = self._tick
        gains = np.array(
            [self._full_gain] + [self._gain.get(i, 1.0) for i in heard_ids], np.float32
        )
        result = self._limit(out, gains)

        self._full_gain = float(gains[0])
        for row, input_id in enumerate(heard_ids):
            self._gain[input_id] = float(gains[row + 1])
        self._forget_stale()
        return MixResult(
            full=result[0],
            minus={input_id: result[row + 1] for row, input_id in enumerate(heard_ids)},
            levels=levels,
        )

    def remove(self, input_id: str) -> None:
        """An input left the mix: its place among the talkers is free."""
        if self.selection is not None:
            self.selection.remove(input_id)

    def _levels(self, stack: Int16Array, ids: list[str]) -> dict[str, float]:
        """RMS of each input in dBov (an upmixed mono input has the same RMS)."""
        if not ids:
            return {}
        squares = self._signal[: len(ids)]  # free until the limiter runs
        np.copyto(squares, stack)
        power = np.einsum("ij,ij->i", squares, squares) / (self.frame_length * _FULL_SCALE_POWER)
        with np.errstate(divide="ignore"):
            dbov = 10.0 * np.log10(power)
        dbov = np.clip(np.nan_to_num(dbov, neginf=MIN_DBOV), MIN_DBOV, 0.0)
        return {input_id: float(dbov[i]) for i, input_id in enumerate(ids)}

    def _limit(self, out: npt.NDArray[np.int32], gains: npt.NDArray[np.float32]) -> Int16Array:
        """Limit every row of `out` into a fresh int16 array; updates `gains` in place."""
        rows = out.shape[0]
        peaks = np.maximum(out.max(axis=1), -out.min(axis=1)).astype(np.float32)
        targets = np.minimum(1.0, KNEE / np.maximum(peaks, 1.0)).astype(np.float32)
        if not ((gains < 1.0) | (targets < 1.0)).any():
            # Common case: nothing near full scale, so the int16 cast is exact.
            return out.astype(np.int16)

        # All rows go through the float path: a row at unity gain under the knee
        # comes out unchanged, and gathering only some rows costs more than it saves.
        attack = targets < gains
        new = np.where(attack, targets, gains + (targets - gains) * self._release)
        # Snap to unity once recovered, so a quiet output returns to the fast path.
        new = np.where(new > 0.999, 1.0, new).astype(np.float32)
        delta = new - gains
        # envelope = gains + delta * (attack ramp or release ramp), built in the
        # preallocated buffers (fresh temporaries of this size cost page faults).
        envelope = self._envelope[:rows]
        scratch = self._scratch[:rows]
        np.multiply(np.where(attack, delta, 0.0)[:, None], self._attack_ramp, out=envelope)
        np.multiply(np.where(attack, 0.0, delta)[:, None], self._release_ramp, out=scratch)
        envelope += scratch
        envelope += gains[:, None]

        signal = self._signal[:rows]
        np.copyto(signal, out, casting="unsafe")
        signal *= envelope
        magnitude = np.abs(signal, out=scratch)
        over = np.greater(magnitude, KNEE, out=self._over[:rows])
        if over.any():
            headroom = INT16_MAX - KNEE
            knee = KNEE + headroom * np.tanh((magnitude[over] - KNEE) / headroom)
            signal[over] = np.copysign(knee, signal[over])
        # Belt and braces: rounding cannot leave int16 after the knee, but never wrap.
        np.rint(signal, out=signal)
        np.clip(signal, -INT16_MAX, INT16_MAX, out=signal)
        gains[:] = new
        return signal.astype(np.int16)

    def _forget_stale(self) -> None:
        if self._tick % 50:  # a sweep now and then is plenty
            return
        horizon = self._tick - STATE_TTL_TICKS
        for input_id in [i for i, seen in self._last_seen.items() if seen < horizon]:
            del self._last_seen[input_id]
            self._gain.pop(input_id, None)


class LevelEnvelopes:
    """Each input's envelope in dBov, followed tick by tick from its level.

    The envelope rises at once (a first syllable is not lost) and falls with a
    `release_ms` time constant in the dB domain; it stays between a floor 30 dB
    under `threshold_dbov` and 0. An input missing from a tick counts as silent.
    """

    def __init__(self, threshold_dbov: float, release_ms: float) -> None:
        self._floor = max(MIN_DBOV, threshold_dbov - 30.0)
        self._release = 1.0 - math.exp(-20.0 / release_ms)
        self.levels: dict[str, float] = {}  # input -> envelope, in the order first heard

    def update(self, levels: Mapping[str, float]) -> dict[str, float]:
        """Feed one tick of levels (dBov per input, 20 ms); return every envelope."""
        envelope = self.levels
        for input_id in levels:  # in the caller's order: deterministic
            envelope.setdefault(input_id, self._floor)
        for input_id, previous in envelope.items():
            raw = max(self._floor, min(0.0, levels.get(input_id, self._floor)))
            envelope[input_id] = (
                raw if raw >= previous else previous + self._release * (raw - previous)
            )
        return envelope

    def forget(self, input_id: str) -> None:
        """Drop an input's envelope (it left)."""
        self.levels.pop(input_id, None)


class TalkerSelection:
    """Chooses the talkers a mix carries: at most `max_talkers` of the loudest inputs.

    As FreeSWITCH's conference, Janus's AudioBridge and LiveKit do, only the few
    loudest inputs are mixed: each of them needs its own mix-minus encode, while
    everyone else shares the one encode of the full mix (which does not contain
    them, so nobody ever hears themselves). `max_talkers` 0 means no limit:
    every input is always a talker (`update` returns None).

    Each input's level (dBov per 20 ms tick, as `MixResult.levels`) goes through
    an envelope follower: it rises at once (a first syllable is not lost) and
    falls with a `release_ms` time constant in the dB domain. An input is
    *speaking* while its envelope is at or above `threshold_dbov`.

    - A speaking input takes a free place among the talkers at once (loudest first).
    - A talker whose envelope stays under the threshold for `hold_ticks`
      consecutive ticks gives its place up.
    - When no place is free, a speaking input whose envelope is louder than the
      quietest talker's by `switch_margin_db` for `min_ticks` consecutive ticks
      takes that talker's place: a steady chorus does not flap.
    - An input missing from a tick counts as silent; `remove()` forgets it.

    Ties go to the louder envelope, then the smaller id: deterministic.
    """

    def __init__(
        self,
        max_talkers: int,
        *,
        threshold_dbov: float = -50.0,
        release_ms: float = 200.0,
        hold_ticks: int = 25,
        switch_margin_db: float = 6.0,
        min_ticks: int = 5,
    ) -> None:
        if max_talkers < 0:
            raise ValueError(f"max_talkers must not be negative, not {max_talkers}")
        if hold_ticks < 1 or min_ticks < 1:
            raise ValueError("hold_ticks and min_ticks must be at least 1")
        if switch_margin_db < 0 or release_ms <= 0:
            raise ValueError("switch_margin_db must not be negative, release_ms must be positive")
        self.max_talkers = max_talkers
        self.threshold_dbov = threshold_dbov
        self.hold_ticks = hold_ticks
        self.switch_margin_db = switch_margin_db
        self.min_ticks = min_ticks
        self._envelopes = LevelEnvelopes(threshold_dbov, release_ms)
        self._quiet: dict[str, int] = {}  # talker -> consecutive ticks under the threshold
        self._streak: dict[str, int] = {}  # input -> consecutive ticks beating the quietest
        self._talkers: list[str] = []  # in the order they got their place

    @property
    def talkers(self) -> frozenset[str] | None:
        """The current talkers, or None when there is no limit (everyone)."""
        return frozenset(self._talkers) if self.max_talkers else None

    def envelope(self, input_id: str) -> float | None:
        """The envelope of an input in dBov, or None if unknown."""
        return self._envelopes.levels.get(input_id)

    def update(self, levels: Mapping[str, float]) -> frozenset[str] | None:
        """Feed one tick of levels; return the talkers for the next tick (None: everyone)."""
        if not self.max_talkers:
            return None
        envelope = self._envelopes.update(levels)

        # Talkers that have been quiet long enough give their places up.
        for talker in list(self._talkers):
            quiet = self._quiet.get(talker, 0) + 1 if envelope[talker] < self.threshold_dbov else 0
            self._quiet[talker] = quiet
            if quiet >= self.hold_ticks:
                self._drop(talker)

        speaking = sorted(
            (i for i, level in envelope.items() if level >= self.threshold_dbov),
            key=lambda i: (-envelope[i], i),
        )
        waiting = [i for i in speaking if i not in self._quiet]
        # Free places go at once, loudest first.
        while waiting and len(self._talkers) < self.max_talkers:
            self._add(waiting.pop(0))
        # Full: the loudest waiting input may replace the quietest talker.
        if waiting and self._talkers:
            quietest = min(self._talkers, key=lambda i: (envelope[i], i))
            bar = envelope[quietest] + self.switch_margin_db
            for input_id in list(self._streak):
                if input_id not in waiting or envelope[input_id] < bar:
                    del self._streak[input_id]
            for input_id in waiting:
                if envelope[input_id] >= bar:
                    self._streak[input_id] = self._streak.get(input_id, 0) + 1
            ready = [i for i in waiting if self._streak.get(i, 0) >= self.min_ticks]
            if ready:
                self._drop(quietest)
                self._add(ready[0])  # `waiting` is sorted loudest first
        else:
            self._streak.clear()
        return frozenset(self._talkers)

    def remove(self, input_id: str) -> None:
        """Forget an input (it left the mix); its place is free for the next tick."""
        self._envelopes.forget(input_id)
        self._streak.pop(input_id, None)
        if input_id in self._quiet:
            self._drop(input_id)

    def _add(self, input_id: str) -> None:
        self._talkers.append(input_id)
        self._quiet[input_id] = 0
        self._streak.clear()  # streaks were measured against the previous talkers

    def _drop(self, input_id: str) -> None:
        self._talkers.remove(input_id)
        del self._quiet[input_id]


class VoiceActivity:
    """Chooses the active speaker from per-input levels, with hysteresis so it does not flap.

    Levels (dBov, one per input per 20 ms tick, as `MixResult.levels`) are smoothed
    with an exponential average in the dB domain (time constant 120 ms). An input
    is a candidate while its smoothed level is at or above `threshold_dbov`.

    - With no active speaker, a candidate becomes active after `min_ticks`
      consecutive ticks as a candidate.
    - A candidate takes over from the active speaker after being louder than it
      by `switch_margin_db` for `min_ticks` consecutive ticks. A talker who follows
      a speaker that has just stopped takes over this way too: the margin over a
      falling level is quickly met.
    - The active speaker is released (active becomes None) after `hold_ticks`
      consecutive ticks below the threshold, unless a candidate qualifies then.
    - An input missing from a tick counts as silent; `remove()` forgets it.

    Ties go to the louder smoothed level, then the smaller id: deterministic.
    """

    def __init__(
        self,
        *,
        threshold_dbov: float = -50.0,
        hold_ticks: int = 50,
        switch_margin_db: float = 6.0,
        min_ticks: int = 15,
    ) -> None:
        if hold_ticks < 1 or min_ticks < 1:
            raise ValueError("hold_ticks and min_ticks must be at least 1")
        if switch_margin_db < 0:
            raise ValueError("switch_margin_db must not be negative")
        self.threshold_dbov = threshold_dbov
        self.hold_ticks = hold_ticks
        self.switch_margin_db = switch_margin_db
        self.min_ticks = min_ticks
        # Raw levels are floored a fixed distance under the threshold: silence
        # (-127) would otherwise take a dozen ticks to climb out of, delaying
        # every first word; the distance keeps any threshold meaningful.
        self._floor = max(MIN_DBOV, threshold_dbov - 30.0)
        self._alpha = 1.0 - math.exp(-20.0 / 120.0)
        self._smoothed: dict[str, float] = {}
        self._streak: dict[str, int] = {}  # consecutive ticks qualifying to take over
        self._silent = 0  # consecutive ticks the active speaker was under the threshold
        self._active: str | None = None
        self._changed = False

    @property
    def active(self) -> str | None:
        """The current active speaker, or None."""
        return self._active

    @property
    def changed(self) -> bool:
        """Whether the last `update()` changed `active`, including a release to None."""
        return self._changed

    def smoothed(self, input_id: str) -> float | None:
        """The smoothed level of an input in dBov, or None if unknown."""
        return self._smoothed.get(input_id)

    def update(self, levels: dict[str, float]) -> str | None:
        """Feed one tick of levels; return the new active speaker id if it changed, else None.

        A release to nobody also changes `active` but returns None: see `changed`.
        """
        self._changed = False
        for input_id in levels:  # in the caller's order, not a set's: deterministic
            if input_id not in self._smoothed:
                self._smoothed[input_id] = self._floor
                self._streak[input_id] = 0
        for input_id, previous in self._smoothed.items():
            raw = max(self._floor, min(0.0, levels.get(input_id, self._floor)))
            self._smoothed[input_id] = previous + self._alpha * (raw - previous)

        active = self._active
        bar = self.threshold_dbov
        if active is not None:
            active_level = self._smoothed[active]
            self._silent = self._silent + 1 if active_level < self.threshold_dbov else 0
            bar = max(bar, active_level + self.switch_margin_db)
        for input_id, level in self._smoothed.items():
            qualifies = input_id != active and level >= bar
            self._streak[input_id] = self._streak[input_id] + 1 if qualifies else 0

        ready = [i for i, streak in self._streak.items() if streak >= self.min_ticks]
        if ready:
            winner = min(ready, key=lambda i: (-self._smoothed[i], i))
            self._set_active(winner)
            return winner
        if active is not None and self._silent >= self.hold_ticks:
            self._set_active(None)
        return None

    def remove(self, input_id: str) -> None:
        """Forget an input; if it was the active speaker, there is none until someone qualifies."""
        self._smoothed.pop(input_id, None)
        self._streak.pop(input_id, None)
        if input_id == self._active:
            self._active = None
            self._silent = 0

    def _set_active(self, input_id: str | None) -> None:
        self._active = input_id
        self._changed = True
        self._silent = 0
        if input_id is not None:
            # Streaks were measured against the previous speaker: start over.
            # (On a release they stay: beating a speaker implies beating the threshold.)
            for key in self._streak:
                self._streak[key] = 0

from streaming_service.playback import PlaybackTracker


def sent(tracker, text, at, audio_ms):
    s = tracker.begin_sentence(text, now=at)
    s.audio_ms = audio_ms
    return s


def test_marks_make_sentences_heard_and_clear_pending():
    t = PlaybackTracker()
    a = sent(t, "Hello there.", 0.0, 1000)
    assert t.pending
    assert t.on_mark(a.mark, now=1.0) is a
    assert not t.pending


def test_interrupt_credits_heard_sentences_and_a_share_of_the_playing_one():
    t = PlaybackTracker()
    a = sent(t, "Your appointment is booked.", 0.0, 1000)
    b = sent(t, "one two three four five six seven eight nine ten", 0.1, 2000)
    sent(t, "Never reached.", 0.2, 1000)
    t.on_mark(a.mark, now=1.0)
    spoken, heard = t.interrupt(now=2.0)  # b has played 1.0 s of its 2.0 s
    assert heard == "Your appointment is booked. one two three four five"
    assert spoken.endswith("Never reached.")
    assert b.mark not in [s.mark for s in t._sentences]


def test_marks_echoed_after_a_clear_do_not_count():
    t = PlaybackTracker()
    a = sent(t, "Long sentence here.", 0.0, 3000)
    t.interrupt(now=0.5)
    assert t.on_mark(a.mark, now=0.6) is None
    assert not t.pending


def test_nothing_heard_when_interrupted_before_audio_played():
    t = PlaybackTracker()
    sent(t, "Hello there friend.", 5.0, 1000)
    assert t.interrupt(now=5.0)[1] == ""


def test_forget_heard_starts_the_next_reply_afresh():
    t = PlaybackTracker()
    a = sent(t, "First reply.", 0.0, 500)
    t.on_mark(a.mark, now=0.5)
    t.forget_heard()
    b = sent(t, "alpha beta gamma delta", 10.0, 1000)
    assert t.interrupt(now=10.5)[1] == "alpha beta"
    assert b is not None


def frames_of(tracker, sentence, n, at):
    """Produce and send n 20 ms frames of `sentence` at time `at` (sent ahead of playback)."""
    for _ in range(n):
        sentence.audio += b"\x00" * 160
        tracker.frame_sent(sentence, 160, now=at)


def test_pause_rewinds_to_the_frame_the_caller_was_hearing_from_the_clock():
    t = PlaybackTracker()
    a = t.begin_sentence("First sentence.")
    frames_of(t, a, 50, at=0.0)  # 1.0 s, all sent at once
    a.complete = a.mark_sent = True
    b = t.begin_sentence("Second sentence.")
    frames_of(t, b, 50, at=0.1)
    t.pause(now=1.3)  # a played out (its echo still in flight), b has played 0.3 s
    assert a.heard and not b.heard
    assert b.heard_bytes == b.sent_bytes == 15 * 160
    assert t.unheard() == [b] and t.pending  # b waits under a fresh mark


def test_a_late_mark_echo_realigns_the_position():
    t = PlaybackTracker()
    a = t.begin_sentence("One.")
    frames_of(t, a, 50, at=0.0)
    a.mark_sent = True
    b = t.begin_sentence("Two.")
    frames_of(t, b, 50, at=0.0)
    t.on_mark(a.mark, now=1.2)  # predicted end 1.0: the player is 0.2 s behind the clock
    t.pause(now=1.6)  # so b started at 1.2: 0.4 s heard
    assert b.heard_bytes == 20 * 160


def test_position_marks_every_second_keep_a_long_sentence_in_step():
    t = PlaybackTracker()
    a = t.begin_sentence("A long sentence of three seconds.")
    marks = []
    for _ in range(150):
        a.audio += b"\x00" * 160
        marks.append(t.frame_sent(a, 160, now=0.0))
    position = [m for m in marks if m is not None]
    assert len(position) == 3  # after each second of audio
    t.on_mark(position[0], now=1.5)  # the first second finished playing half a second late
    assert t.pending  # a position mark completes nothing
    t.pause(now=2.0)
    assert a.heard_bytes == 8000 * 3 // 2  # 1.5 s heard, not the 2.0 s the clock alone would say
    assert t.on_mark(position[1], now=2.01) is None  # echoed after the clear: ignored


def test_marks_of_paused_sentences_are_renamed_and_old_echoes_ignored():
    t = PlaybackTracker()
    a = t.begin_sentence("Long sentence right here.")
    frames_of(t, a, 100, at=0.0)
    a.complete = a.mark_sent = True
    old = a.mark
    t.pause(now=0.5)
    assert a.mark != old and not a.mark_sent
    assert t.on_mark(old, now=0.51) is None  # the clear's echo
    _spoken, heard = t.give_up()
    assert heard == "Long"  # 0.5 s of 2.0 s: a quarter of the words


def test_what_an_echo_confirmed_stays_heard_whatever_the_clock_says():
    t = PlaybackTracker()
    a = t.begin_sentence("A sentence of two seconds.")
    marks = []
    for _ in range(100):
        a.audio += b"\x00" * 160
        marks.append(t.frame_sent(a, 160, now=0.0))
    first = next(m for m in marks if m is not None)
    t.on_mark(first, now=5.0)  # a very late echo pushes the rest of the model far into the future
    t.pause(now=1.0)  # by the clock, nothing of the rest has started
    assert a.heard_bytes == 8000  # but the first second was confirmed heard

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

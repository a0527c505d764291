from streaming_service.sentence_chunker import SentenceChunker


def stream(text, step=3):
    chunker = SentenceChunker()
    out = []
    for i in range(0, len(text), step):
        out += chunker.push(text[i:i + step])
    return out + chunker.flush()


def test_sentences_come_out_as_soon_as_they_end():
    chunker = SentenceChunker()
    assert chunker.push("Sure. I can ") == ["Sure."]
    assert chunker.push("help with that! Wh") == ["I can help with that!"]
    assert chunker.flush() == ["Wh"]


def test_abbreviations_initials_and_decimals_do_not_split():
    text = "Dr. Smith can see you at 3.30 pm. Ask for J. Doe, e.g. at the desk. Thanks!"
    assert stream(text) == ["Dr. Smith can see you at 3.30 pm.", "Ask for J. Doe, e.g. at the desk.", "Thanks!"]


def test_long_first_sentence_without_a_mark_is_cut_where_a_phrase_begins():
    text = "I have looked at the calendar for the whole of next week and the week after, and Tuesday works"
    out = stream(text)
    assert out[0] == "I have looked at the calendar for the whole of next week"  # before "and", past 32 chars
    assert " ".join(out) == text and len(out) == 2


def test_a_comma_before_the_phrase_length_wins():
    out = stream("We offer general checkups and cleanings, fillings and crowns.")
    assert out == ["We offer general checkups and cleanings,", "fillings and crowns."]


def test_very_long_text_without_punctuation_is_cut_at_a_space():
    out = stream("word " * 100)
    assert all(len(p) <= 240 for p in out) and " ".join(out).split() == ["word"] * 100


def test_whitespace_only_yields_nothing():
    assert stream("   ") == []


def test_first_piece_goes_at_the_first_natural_break_after_twenty_characters():
    text = ("We offer general checkups and cleanings, fillings, crowns and bridges, and whitening. "
            "Later sentences stay whole, even with commas, like this one.")
    out = stream(text)
    assert out[0] == "We offer general checkups and cleanings,"
    assert out[1:] == ["fillings, crowns and bridges, and whitening.",
                       "Later sentences stay whole, even with commas, like this one."]


def test_a_short_opening_comma_and_a_dash_break():
    assert stream("Sure, we have a slot on Tuesday morning - shall I book it?")[0] == \
        "Sure, we have a slot on Tuesday morning -"


def test_held_is_the_text_streamed_past_the_last_piece():
    chunker = SentenceChunker()
    assert chunker.push("We are open from nine in the morning to ") == ["We are open from nine in the morning"]
    assert chunker.held == "to"
    chunker.push("five.")
    assert chunker.held == "to five."
    assert chunker.flush() == ["to five."] and chunker.held == ""

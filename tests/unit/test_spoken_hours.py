from streaming_service.agents.call_tools import spoken_hours

NINE_TO_SIX = [["09:00", "18:00"]]


def test_a_run_of_days_with_the_same_hours_is_one_phrase():
    week = {d: NINE_TO_SIX for d in ("mon", "tue", "wed", "thu", "fri", "sat")}
    assert spoken_hours(week) == "We're open Monday to Saturday, 9 am to 6 pm."


def test_different_hours_and_gaps_start_new_phrases():
    week = {d: NINE_TO_SIX for d in ("mon", "tue", "wed", "thu", "fri")} | {"sat": [["10:00", "14:30"]]}
    assert spoken_hours(week) == "We're open Monday to Friday, 9 am to 6 pm, and Saturday, 10 am to 2:30 pm."
    split = {"mon": NINE_TO_SIX, "tue": NINE_TO_SIX, "thu": NINE_TO_SIX}
    assert spoken_hours(split) == "We're open Monday and Tuesday, 9 am to 6 pm, and Thursday, 9 am to 6 pm."


def test_split_days_empty_and_closed():
    assert spoken_hours({"mon": [["09:00", "12:00"], ["13:00", "17:00"]]}) == \
        "We're open Monday, 9 am to 12 pm and 1 pm to 5 pm."
    assert spoken_hours({}) == "We're open every day."
    assert spoken_hours({"mon": []}) == "We're closed at the moment."

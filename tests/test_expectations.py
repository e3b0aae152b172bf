"""voiceharness.expectations: the classifier judges transcripts of replies it was never given word for word.

Transcripts here are what a recogniser writes (lower case, misheard words, numbers as words)
or what a gateway's metadata says (digits, punctuation). The shipped smartjarvis expectations
hold the published gateway's templates; every sentence below is worded otherwise.
"""

from __future__ import annotations

import pytest

from voiceharness.expectations import (
    MIN_MARGIN,
    MIN_SCORE,
    QUANTITY,
    clock_span,
    clock_strength,
    load_expectations,
    normalize_words,
    scheduled_times,
)


@pytest.fixture(scope="module")
def smartjarvis():
    return load_expectations("smartjarvis")


def judged(expectations, transcript: str, request_text: str) -> str | None:
    return expectations.judge(transcript, request_text).intent


@pytest.mark.parametrize(
    ("transcript", "request_text", "intent"),
    [
        # the issue's own cases: one keyword, and "right now" that half-matches a time phrase
        ("hi there what would you like me to do", "hello jarvis", "GREETING"),
        ("i can't check the weather right now but i'd be happy to help with other tasks", "how is the weather",
         "WEATHER_SIMPLE"),
        ("hello there how can i be of help", "hello jarvis", "GREETING"),
        ("okay you told me to say open the door", "echo open the door", "ECHO"),
        ("sorry the forecast is not something i can get for you", "how is the weather", "WEATHER_SIMPLE"),
        ("i am not sure what you mean could you put it differently", "play some music", "UNKNOWN"),
        ("right now the clock says four forty five p m", "what time is it", "TIME_NOW"),
    ],
)
def test_paraphrases_are_judged(smartjarvis, transcript, request_text, intent):
    assert judged(smartjarvis, transcript, request_text) == intent


def test_a_missing_word_still_judges(smartjarvis):
    assert judged(smartjarvis, "i not sure i understood that could you it", "order a pizza") == "UNKNOWN"
    assert judged(smartjarvis, "the current is nine oh nine a m", "what time is it") == "TIME_NOW"


def test_a_misheard_word_still_judges(smartjarvis):
    # "what" heard as "why", "weather" as its homophone "whether", "time" as "climate"
    assert judged(smartjarvis, "hi there why would you like me to do", "hello jarvis") == "GREETING"
    assert judged(smartjarvis, "whether information is not available at the moment", "how is the weather") == \
        "WEATHER_SIMPLE"
    assert judged(smartjarvis, "the current climate is nine or nine am", "what time is it") == "TIME_NOW"


def test_fillers_around_a_reply_do_not_change_it(smartjarvis):
    plain = smartjarvis.judge("greetings i am here to assist you", "hello jarvis")
    padded = smartjarvis.judge("um well sure okay so greetings i am here to assist you alright", "hello jarvis")
    assert plain.intent == padded.intent == "GREETING"


@pytest.mark.parametrize(
    "reply",
    ["It's 9:09 AM.", "it is nine oh nine a m", "It's twenty past nine.", "The clock says a quarter to six.",
     "Currently it's 12:30 PM.", "it's about ten o'clock", "it is seven fifteen in the evening",
     "It's five minutes past one."],
)
def test_times_in_words_and_digits_are_the_time(smartjarvis, reply):
    assert judged(smartjarvis, reply, "what time is it") == "TIME_NOW"


def test_a_reply_that_names_two_intents_is_unjudged_not_a_guess(smartjarvis):
    verdict = smartjarvis.judge("it's nine oh five and i can't check the weather right now", "what time is it")
    assert verdict.intent is None
    assert {max(verdict.scores, key=verdict.scores.get), verdict.runner_up} == {"TIME_NOW", "WEATHER_SIMPLE"}
    assert verdict.score - verdict.runner_up_score < MIN_MARGIN
    verdict = smartjarvis.judge("hello i did not quite catch that", "play some music")
    assert verdict.intent is None, verdict


def test_the_verdict_says_why_winner_and_runner_up_with_scores(smartjarvis):
    verdict = smartjarvis.judge("you said hello world", "echo hello world")
    assert verdict.intent == "ECHO" and verdict.score >= MIN_SCORE
    assert verdict.runner_up in smartjarvis.intents and verdict.runner_up != "ECHO"
    assert verdict.score - verdict.runner_up_score >= MIN_MARGIN
    assert verdict.scores["ECHO"] == verdict.score


def test_nothing_recognisable_is_unjudged(smartjarvis):
    assert judged(smartjarvis, "the cat sat on the mat", "order a pizza") is None
    assert judged(smartjarvis, "", "hello") is None


def test_words_said_back_from_the_request_count_for_the_echo_only(smartjarvis):
    assert judged(smartjarvis, "you said what is the weather", "echo what is the weather") == "ECHO"
    # numbers said back are no clock time
    assert judged(smartjarvis, "testing one two three as you said", "repeat testing one two three") == "ECHO"
    # a time request whose words look like an echo request's ("tell me" is a command word)
    assert judged(smartjarvis, "the time is currently nine oh nine a m", "tell me the time") == "TIME_NOW"


def test_numbers_and_clock_times_are_normalized_as_a_voice_says_them():
    assert normalize_words("It's 9:09 AM") == ["it", "is", "nine", "oh", "nine", "am"]
    assert normalize_words("12:00 p.m., 7:30") == ["twelve", "o'clock", "pm", "seven", "thirty"]
    assert normalize_words("I'm sure") == ["i", "am", "sure"]


@pytest.mark.parametrize(
    ("words", "strength"),
    [("nine oh nine am", 1.0), ("twenty past nine", 1.0), ("a quarter to six", 1.0), ("ten in the morning", 1.0),
     ("it is for thirty pm", 1.0), ("nine or nine am", 1.0), ("one two three", 0.3), ("it is nine", 0.3),
     ("good to see you", 0.0), ("i am not sure", 0.0),
     # espeak-ng reads "6:07" "six zero seven" (the reference gateway's voice)
     ("the current time is six zero seven", 1.0), ("right now it is one zero four", 1.0)],
)
def test_clock_strength(words, strength):
    assert clock_strength(words.split()) == strength


def test_clock_span_is_where_the_time_is():
    assert clock_span(["the", "current", "time", "is", "nine", "oh", "nine", "am", "right", "now"]) == (4, 8)
    assert clock_span(["it", "is", "a", "quarter", "to", "six"]) == (2, 6)
    assert clock_span(["no", "time", "here"]) is None


# -- the fallback intent, related words, misheard hours (the second round, after heldout.tsv was read)


def _fallback_file(tmp_path, *, fallback: object = True):
    import json

    path = tmp_path / "fallback.json"
    path.write_text(json.dumps({"intents": {
        "WEATHER": {"phrases": ["it is sunny"], "keywords": ["weather", "forecast"]},
        "UNKNOWN": {"phrases": ["i did not understand"], "related": ["can not help with that", "say that again"],
                    "fallback": fallback},
    }}))
    return path


def test_the_fallback_intent_yields_to_a_subject_heard_in_the_same_reply(tmp_path):
    expectations = load_expectations(_fallback_file(tmp_path))
    # No subject: the apology is the fallback's.
    assert judged(expectations, "sorry i can't help with that", "order a pizza") == "UNKNOWN"
    # The same apology about the weather is the weather's reply.
    assert judged(expectations, "the weather forecast sorry i can't help with that", "how is the weather") == "WEATHER"
    # Without the flag the two are a tie: not a guess.
    plain = load_expectations(_fallback_file(tmp_path, fallback=False))
    assert judged(plain, "the weather forecast sorry i can't help with that", "how is the weather") is None


@pytest.mark.parametrize(("transcript", "request_text", "intent"), [
    ("sorry i didn't get that", "play some music", "UNKNOWN"),
    ("pardon please repeat that in other words", "turn off the lights", "UNKNOWN"),
    ("i don't know how to help with that request", "set an alarm for seven", "UNKNOWN"),
    ("my weather source is offline so i can't say whether it will rain", "how is the weather", "WEATHER_SIMPLE"),
    ("let me repeat that for you i love pizza that is exactly what i heard you say", "repeat i love pizza", "ECHO"),
    ("oh hi what do you need from me", "hi jarvis", "GREETING"),
    # offers a greeting makes (round 3): "what can I help you with" is no weather reply although
    # the weather templates end in "what else can I help you with"
    ("so what can i help you with", "good evening jarvis", "GREETING"),
    ("so what do you want to do now", "hello jarvis", "GREETING"),
    ("tell me what you need and i will do it", "hi jarvis", "GREETING"),
    ("my friend what should we do first", "hello jarvis", "GREETING"),
    ("you can ask me anything", "hey jarvis", "GREETING"),
    ("sorry i do not know what you want", "play some jazz", "UNKNOWN"),
    # round 13's related words, from the retired sets' transcripts that no rule judged
    ("things are splendid over here thanks and with you", "how are things", "GREETING"),
    ("and a very good day to you how might i assist", "good day jarvis", "GREETING"),
    ("tree pollen is moderate grass pollen is low", "how is the pollen", "WEATHER_SIMPLE"),
    ("careful the roads are slick with black ice and it's minus two", "is it icy", "WEATHER_SIMPLE"),
    ("i do nine hundred hours monday morning right on schedule", "do you have the time", "TIME_NOW"),
    ("hotel stays are outside my abilities i'm sorry", "book a hotel", "UNKNOWN"),
    ("setting reminders isn't supported here", "remind me to call mom", "UNKNOWN"),
])
def test_the_shipped_related_words_judge_other_wordings(smartjarvis, transcript, request_text, intent):
    assert judged(smartjarvis, transcript, request_text) == intent


def test_related_words_are_evidence_but_not_search_keywords():
    spec = load_expectations("smartjarvis").intents["UNKNOWN"]
    assert ("pardon",) in spec.keywords
    assert ("pardon",) not in spec.search_keywords
    assert set(spec.search_keywords) <= set(spec.keywords)


def test_you_said_is_no_echo_when_the_request_was_no_echo_request(smartjarvis):
    verdict = smartjarvis.judge("i'm sorry i didn't understand what you just said could you try again",
                                "set an alarm for seven")
    assert verdict.intent == "UNKNOWN", verdict


def test_minutes_and_a_relation_say_a_clock_time_when_the_hour_is_misheard(smartjarvis):
    assert clock_strength(normalize_words("it's five minutes past line")) >= 0.5
    assert clock_strength(normalize_words("five more minutes please")) < 0.5
    assert judged(smartjarvis, "it's five minutes past line", "what time is it") == "TIME_NOW"


def test_minutes_only_a_clock_says_and_am_or_pm_say_a_clock_time_when_the_hour_is_misheard(smartjarvis):
    """espeak-ng's "The current time is 7:00 PM", heard by the language model (round 11: the
    learned model alone had carried it, at 0.49 to 0.66 depending on its training)."""
    assert clock_strength(normalize_words("the parents don't instantly zero zero pm")) >= 0.5
    assert clock_strength(normalize_words("seven oh oh pm")) == 1.0
    assert clock_strength(normalize_words("winds around fifteen am slash h")) < 0.5  # "15 km/h" misheard
    assert judged(smartjarvis, "the parents don't instantly zero zero pm", "tell me the time") == "TIME_NOW"


@pytest.mark.parametrize(("value", "fragment"), [("yes", "must be true or false"), (None, "must be true or false")])
def test_a_malformed_fallback_flag_is_refused_naming_the_key(tmp_path, value, fragment):
    from voiceharness.errors import UsageError

    with pytest.raises(UsageError, match=f"intents.UNKNOWN.fallback: {fragment}"):
        load_expectations(_fallback_file(tmp_path, fallback=value))


def test_a_keyword_inside_the_echoed_request_counts_for_the_echo_only(smartjarvis):
    # "good morning" is a greeting's related words, but here it is the request said back.
    assert judged(smartjarvis, "okay good morning everyone", "repeat good morning everyone") == "ECHO"
    assert judged(smartjarvis, "good morning what can i do for you", "good morning jarvis") == "GREETING"


@pytest.mark.parametrize("words", ["it is twenty five passed a", "it's a quarter past the", "half past it"])
def test_two_word_minutes_or_a_quarter_before_a_relation_say_a_time_without_the_hour(words):
    assert clock_strength(normalize_words(words)) >= 0.5


def test_today_and_good_are_said_by_any_reply_not_only_a_greeting(smartjarvis):
    # The published greeting says "how can I help you today", but a weather reply says "today" as
    # often, and "good" is "all good", "good luck": heard alone they are no greeting (the retired
    # held-out sets: "no forecast for you today" unjudged, "all good but ..." judged GREETING).
    assert judged(smartjarvis, "sorry there is no forecast for today", "how is the weather") == "WEATHER_SIMPLE"
    assert judged(smartjarvis, "all good but the door is closed", "echo open the door") != "GREETING"
    # Inside a greeting's own words they still count.
    assert judged(smartjarvis, "good morning how can i help you today", "good morning jarvis") == "GREETING"


def test_a_short_request_said_back_whole_is_an_echo(smartjarvis):
    # "well done": one word not common, but both heard in order, and neither another intent's
    # subject. Said back whole, it is strong evidence (the echo slot's), enough to beat an
    # apology's word ("requested" is the fallback's "request").
    assert judged(smartjarvis, "well done as requested", "say well done") == "ECHO"
    for transcript, request_text in [("well done", "say well done"), ("good luck that is it", "say good luck")]:
        verdict = smartjarvis.judge(transcript, request_text)
        assert verdict.intent == "ECHO" and verdict.score >= 0.8, verdict
    # Heard in part, it is not enough on its own.
    assert judged(smartjarvis, "well then", "say well done") != "ECHO"
    # A request that names another intent's subject, said back, is that intent's reply.
    assert judged(smartjarvis, "the time is a quarter to six", "tell me the time") == "TIME_NOW"


@pytest.mark.parametrize("words", ["just after nine", "a little past ten", "shortly before six"])
def test_a_relation_before_an_hour_says_a_clock_time(smartjarvis, words):
    assert clock_strength(normalize_words(f"it's {words}")) >= 0.5
    assert judged(smartjarvis, f"it's {words}", "what time is it") == "TIME_NOW"


def test_to_before_a_number_is_no_clock_time():
    # "to" is said before a number about anything ("up to two"): only past, after and before count.
    assert clock_strength(normalize_words("you can add up to two")) < 0.5


# -- round 4: 24-hour clock times, and how English speakers say "I did not understand" and
# "hello" (written from general knowledge of English, not from one set's failures; the
# transcripts below are the language model's, of retired held-out sets, that the judge left
# unjudged before)


@pytest.mark.parametrize(("transcript", "request_text", "intent"), [
    ("ah i didn't follow that", "order a pizza", "UNKNOWN"),
    ("could you be more specific", "sing a song", "UNKNOWN"),
    ("that's not something i can do", "start the car", "UNKNOWN"),
    ("sorry i didn't hear you clearly could you repeat", "order a pizza", "UNKNOWN"),
    # "help" leans to a greeting's offer; "can't help you with" is a refusal.
    ("sorry i can't help you with that request", "open the garage", "UNKNOWN"),
    ("a long time no see", "hey jarvis", "GREETING"),
    ("here what's happening", "hey jarvis", "GREETING"),
    ("they they're nice to have you back what do you feel like doing", "hello jarvis", "GREETING"),
])
def test_open_ended_replies_said_in_other_common_words(smartjarvis, transcript, request_text, intent):
    assert judged(smartjarvis, transcript, request_text) == intent


@pytest.mark.parametrize(("transcript", "request_text"), [
    # An apology or a refusal about the weather is the weather's reply: the fallback yields.
    ("i'm unable to check the weather right now", "how is the weather"),
    ("whether i'm afraid i can't help with that one", "how is the weather"),
    ("sorry i can't help you with the forecast", "what is the forecast"),
])
def test_a_related_phrase_of_the_fallback_does_not_beat_a_named_subject(smartjarvis, transcript, request_text):
    assert judged(smartjarvis, transcript, request_text) == "WEATHER_SIMPLE"


def test_a_greeting_phrase_does_not_beat_a_clock_time(smartjarvis):
    # "good to see" is a greeting's, but the clock time is the reply's subject: not a greeting.
    assert judged(smartjarvis, "good to see the time is eighteen thirty", "what time is it") != "GREETING"


@pytest.mark.parametrize("words", ["it's eighteen thirty", "sixteen forty five", "zero nine hundred hours",
                                   "fourteen hundred", "it's twenty thirty"])
def test_a_24_hour_clock_time_is_a_clock_time(smartjarvis, words):
    assert clock_strength(normalize_words(words)) >= 1.0
    assert judged(smartjarvis, words, "what time is it") == "TIME_NOW"


def test_a_24_hour_time_in_digits_reads_as_a_voice_says_it():
    assert normalize_words("It's 18:30") == ["it", "is", "eighteen", "thirty"]
    assert normalize_words("at 14:00") == ["at", "fourteen", "hundred"]
    assert normalize_words("at 2:00") == ["at", "two", "o'clock"]


@pytest.mark.parametrize("words", ["twenty two degrees", "eighteen", "fifteen people", "there are seventeen"])
def test_a_number_above_twelve_without_minutes_is_no_clock_time(words):
    # An hour of a 24-hour clock is a time only with minutes or "hundred" after it: a number
    # above twelve alone is said of anything.
    assert clock_strength(normalize_words(words)) < 0.5


@pytest.mark.parametrize(("transcript", "request_text", "intent"), [
    ("it's twenty three degrees outside at the moment", "is it warm outside", "WEATHER_SIMPLE"),
    ("right now it's overcast and eleven degrees celsius", "what's the weather like", "WEATHER_SIMPLE"),
    ("humidity is at eighty five percent right now", "how humid is it", "WEATHER_SIMPLE"),  # a weather word since round 9
])
def test_a_number_with_a_unit_is_a_quantity_not_a_clock_time(smartjarvis, transcript, request_text, intent):
    """"it's twenty three degrees ... at the moment" is no "it's {time} at the moment" (before a
    unit made a quantity, the rules left the first two unjudged and judged the third TIME_NOW)."""
    heard = smartjarvis.words_heard(transcript, request_text)
    assert QUANTITY in heard.words and clock_strength(heard.words) == 0.0
    assert smartjarvis.judge(transcript, request_text).intent == intent


def test_a_sign_makes_a_quantity_and_a_clock_time_or_an_echoed_quantity_stays(smartjarvis):
    assert smartjarvis.words_heard("it is minus four right now", "is it cold").words == [
        "it", "is", "minus", QUANTITY, "right", "now"]
    assert smartjarvis.judge("it is minus four right now", "is it cold").intent != "TIME_NOW"
    assert smartjarvis.judge("it is four thirty right now", "what time is it").intent == "TIME_NOW"
    echo = smartjarvis.words_heard("you said twenty five degrees and rising", "repeat twenty five degrees and rising")
    assert QUANTITY not in echo.words  # the request's own words, said back, are the echo's evidence
    assert smartjarvis.judge("you said twenty five degrees and rising",
                             "repeat twenty five degrees and rising").intent == "ECHO"


@pytest.mark.parametrize(("transcript", "request_text"), [
    ("i can't access your bank account information", "what is my bank balance"),
    ("i'm not able to translate yet is there something else i can help with", "translate hello into french"),
    ("apologies i don't have access to stock prices", "how is the stock market"),
])
def test_a_weather_template_heard_without_weather_is_no_weather_reply(smartjarvis, transcript, request_text):
    """The published weather replies are refusals; the same refusal without "weather" in it is no
    weather reply (before the discount, all three were judged WEATHER_SIMPLE)."""
    heard = smartjarvis.words_heard(transcript, request_text)
    assert "WEATHER_SIMPLE" not in smartjarvis.subjects_heard(heard)
    assert smartjarvis.judge(transcript, request_text).intent != "WEATHER_SIMPLE"


def test_a_weather_refusal_that_says_weather_stays_a_weather_reply(smartjarvis):
    for transcript in ("weather information is not available at the moment is there something else i can help with",
                       "i don't have access to whether data right now"):  # "whether" sounds like "weather"
        assert smartjarvis.judge(transcript, "what is the weather").intent == "WEATHER_SIMPLE"


def test_the_subjectless_discount_never_hands_a_reply_to_the_fallback(smartjarvis):
    """espeak-ng's "I can't check the weather right now, but I'd be happy to help with other
    tasks", as the language model hears it: a garbled weather reply, unjudged (for the hybrid's
    next stages), not a refusal."""
    transcript = "i can't do it with the right oh look but don't be tempted to help with other tests"
    verdict = smartjarvis.judge(transcript, "what is the weather")
    assert verdict.scores["UNKNOWN"] - verdict.scores["WEATHER_SIMPLE"] >= MIN_MARGIN  # the discount alone...
    assert verdict.intent is None  # ... does not make it a refusal


@pytest.mark.parametrize(("transcript", "request_text"), [
    # Refusals (heldout10, heldout11: the language model's transcripts) offering another subject.
    ("i can't control smart lights want the weather instead", "turn on the living room lights"),
    ("no jazz from me sadly music isn't my department want the time", "play some jazz"),
    ("alarms aren't supported i could tell you what time it is though", "set an alarm for six"),
    ("sorry i can't set reminders yet but i can tell you the time", "remind me to call mom"),
    ("flights are beyond me i'm afraid happy to share the time or today's forecast though", "book a flight"),
])
def test_a_refusal_that_offers_another_subject_is_a_refusal(smartjarvis, transcript, request_text):
    """The subject a refusal offers ("want the weather instead?") is not what the reply is about:
    it names no intent and counts for none (before round 11 the rules judged each of these the
    offered intent)."""
    heard = smartjarvis.words_heard(transcript, request_text)
    assert heard.offered and heard.aside
    assert smartjarvis.subjects_heard(heard) <= {"UNKNOWN"}
    assert smartjarvis.judge(transcript, request_text).intent == "UNKNOWN"


@pytest.mark.parametrize(("transcript", "request_text"), [
    ("i can not check the weather right now but i would be happy to help with other tasks", "what's the weather"),
    ("i'm unable to get weather info at the moment what other tasks can i help with", "is it going to rain"),
    ("the weather service is not responding so i can't give you a forecast", "what is the forecast"),
    ("it won't rain today but i'd take an umbrella tonight", "will it rain"),  # "rain" said, not offered
])
def test_a_weather_reply_that_says_no_offers_nothing(smartjarvis, transcript, request_text):
    """The published gateway's weather replies are refusals *of the weather*: the keyword inside
    the refused clause (or said once outside an offer) still names the weather."""
    heard = smartjarvis.words_heard(transcript, request_text)
    assert "WEATHER_SIMPLE" in smartjarvis.subjects_heard(heard)
    assert smartjarvis.judge(transcript, request_text).intent == "WEATHER_SIMPLE"


@pytest.mark.parametrize(("transcript", "request_text"), [
    ("okay i missed that one more time please", "sing a song"),  # heldout5, judged TIME_NOW before round 11
    ("okay maybe next time", "order a pizza"),  # (after "sorry", since round 14 a refusal, "time" is offered too)
    ("take your time and say it another way", "blorp"),
])
def test_time_in_an_idiom_names_no_clock(smartjarvis, transcript, request_text):
    heard = smartjarvis.words_heard(transcript, request_text)
    assert heard.aside and not heard.offered
    assert "TIME_NOW" not in smartjarvis.subjects_heard(heard)
    assert smartjarvis.judge(transcript, request_text).intent != "TIME_NOW"
    # The same word naming the clock still does.
    assert "TIME_NOW" in smartjarvis.subjects_heard(smartjarvis.words_heard("the time is not known", request_text))


@pytest.mark.parametrize(("transcript", "request_text"), [
    # Refusals said without a negation word (heldout9, heldout13: the language model's transcripts).
    ("sports results are outside my reach if you want i'll read out tonight's forecast instead",
     "whats the score in the match"),
    ("ride booking is off the table for me shall i look at the temperature so you can dress for it",
     "order a taxi to the station"),
    ("h m m directions are out of my league should i check the outside temperature instead", "navigate home"),
    # What the assistant can do, listed after a refusal (heldout8, heldout12, heldout13).
    (("i'm sorry i can't book flights or make travel arrangements i can't tell you the time check the weather or "
      "repeat something back to you"), "book me a flight to denver next friday"),
    ("i don't have access to spotify but i can't help with the time or the weather", "play some jazz on spotify"),
    (("appointments are beyond me my skills are limited to greetings repeating phrases telling the hour and "
      "checking conditions outside"), "book a haircut for friday"),
    # "but I can" heard as "but I can't" after a refusal (heldout8).
    ("sorry i can't set reminders yet but i can't tell you the time", "remind me to stretch at noon"),
])
def test_a_refusal_without_a_negation_word_or_listing_what_it_can_do_is_no_reply_of_what_it_offers(
        smartjarvis, transcript, request_text):
    """Round 13: refusal phrases without "not" ("outside my reach", "off the table"), a list of two
    subjects or more after a refusal, and "but I can" misheard as "but I can't" after one all say
    the subjects aside (before round 13 the rules judged each of these the weather or the time)."""
    heard = smartjarvis.words_heard(transcript, request_text)
    assert heard.offered
    assert smartjarvis.subjects_heard(heard) <= {"UNKNOWN"}
    assert judged(smartjarvis, transcript, request_text) in ("UNKNOWN", None)


@pytest.mark.parametrize(("transcript", "request_text"), [
    ("thunderstorms are likely tonight and it won't be cold", "whats the weather tonight"),
    ("it's not raining yet but the forecast says showers after lunch", "will it rain"),
    (("hello and welcome back i can't tell you the time check the weather or repeat something back so just let me "
      "know what you'd like"), "hello jarvis"),
])
def test_a_subject_said_after_a_no_that_is_no_list_of_offers_still_counts(smartjarvis, transcript, request_text):
    """The list rule needs two subjects after a refusal; one subject after a "no" is still named,
    and a greeting that lists what the assistant can do stays a greeting."""
    verdict = smartjarvis.judge(transcript, request_text)
    expected = "GREETING" if request_text.startswith("hello") else "WEATHER_SIMPLE"
    assert verdict.intent == expected, verdict


@pytest.mark.parametrize(("transcript", "request_text"), [
    ("of course what's the weather in oslo", "can you say whats the weather in oslo"),
    ("sleep tight little one", "parrot this sleep tight little one"),
    ("good morning sleeping neighbors", "repeat after me good morning sleepy neighbors"),
])
def test_the_request_after_a_longer_command_is_what_an_echo_says_back(smartjarvis, transcript, request_text):
    """"can you say", "parrot this", "repeat after me" are command words of the shipped SmartJARVIS
    expectations (round 13): the words after them are the ones said back, so the weather or a
    greeting said back is the echo's (before, "can you say ..." was no echo request at all)."""
    heard = smartjarvis.words_heard(transcript, request_text)
    assert heard.echo_share >= 0.6
    assert judged(smartjarvis, transcript, request_text) == "ECHO"


@pytest.mark.parametrize(("transcript", "request_text"), [
    # Weather reports the language model heard nearly whole (heldout9, heldout12, heldout14): the
    # clock time says when the weather comes, not what time it is.
    ("thunderstorms are likely after five pm and some could bring hail", "any storms coming"),
    ("expect light rain after three pm so grab an umbrella", "will it rain today"),
    ("thunder storms will come after nine tonight with gusts up to forty mph", "weather tonight"),
    # A hedge between the relation and the time (round 15; heldout13's "rain likely from about six pm").
    ("rain is likely from about six pm so take an umbrella", "will it rain today"),
    ("thunderstorms are likely after roughly five pm and some could bring hail", "any storms coming"),
])
def test_a_clock_time_that_says_when_the_weather_comes_is_no_time_of_day(smartjarvis, transcript, request_text):
    """Round 14 (before it, each of these was unjudged: the weather and a clock time both named)."""
    heard = smartjarvis.words_heard(transcript, request_text)
    assert scheduled_times(heard.words)
    assert "TIME_NOW" not in smartjarvis.subjects_heard(heard)
    assert judged(smartjarvis, transcript, request_text) == "WEATHER_SIMPLE"


@pytest.mark.parametrize("transcript", [
    "it's just after nine", "it's five after one", "it's twenty after nine", "it's two minutes after six",
    "a little before ten", "it's ten past four", "it is about six pm",
])
def test_a_clock_time_said_as_the_time_now_is_not_scheduled(smartjarvis, transcript):
    assert not scheduled_times(normalize_words(transcript))
    assert judged(smartjarvis, transcript, "what time is it") == "TIME_NOW"


def test_what_do_you_need_heard_as_whether_you_need_is_no_weather_word(smartjarvis):
    """A greeting's "Hi there, what do you need?" (heldout14, flite's slt; heldout7 and others):
    round 14."""
    heard = smartjarvis.words_heard("hi there whether you need", "hi")
    assert "WEATHER_SIMPLE" not in smartjarvis.subjects_heard(heard)
    assert judged(smartjarvis, "hi there whether you need", "hi") == "GREETING"
    # "whether" elsewhere is still the weather's homophone
    assert "WEATHER_SIMPLE" in smartjarvis.subjects_heard(smartjarvis.words_heard("whether it will rain", "hi"))


@pytest.mark.parametrize(("transcript", "request_text"), [
    # heldout14: "Translation isn't one of my skills, sorry. But I can tell you what time it is."
    ("translation isn't one of my skills sorry but i can tell you what time it is", "translate thank you into german"),
    ("translation is one of my skills sorry but i can't tell you what time it is", "translate thank you into german"),
    # heldout14: "I can't call a ride. Right now I can tell the time, give the forecast, say hello..."
    ("i can call a ride right now i can tell the time in the forecast say hello or repeat what you say",
     "call me an uber"),
])
def test_a_refusal_after_sorry_or_a_list_of_three_subjects_offers_them(smartjarvis, transcript, request_text):
    """Round 14: "sorry", "afraid", "unfortunately" refuse too; a list of three subjects after "I
    can" is what the assistant can do even when its refusal was misheard; and a phrase heard
    around an offered subject ("I can tell you what time it is") is the offer's, not the time's."""
    heard = smartjarvis.words_heard(transcript, request_text)
    assert heard.offered
    assert judged(smartjarvis, transcript, request_text) == "UNKNOWN"


@pytest.mark.parametrize(("transcript", "request_text"), [
    ("peter piper picked a peck of pickled peppers", "can you repeat peter piper picked a peck of pickled peppers"),
    ("the fourteenth of february", "read back the date the fourteenth of february"),
    ("the fourteenth of february", "could you please say the fourteenth of february"),
])
def test_a_command_word_after_a_polite_opening_starts_the_request(smartjarvis, transcript, request_text):
    assert judged(smartjarvis, transcript, request_text) == "ECHO"

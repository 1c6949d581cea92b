"""The default rubric: six therapeutic criteria and overall preference, in our own words.

Each item is a question with what makes a response better and worse. Version 1; a changed text gets a
new version (services.studies.criterion_define) so exports and reports can cite exactly what raters saw.
"""

DEFAULT_CRITERIA: list[dict[str, str | bool]] = [
    {
        "key": "empathy",
        "title": "Empathy",
        "question": "Which response better understands and acknowledges what the person is feeling?",
        "better_when": "Names the feelings the person expresses or implies, reflects them accurately and warmly, "
        "and conveys that their experience makes sense.",
        "worse_when": "Skips past the feelings, minimises them, sounds generic or scripted, or rushes to fix.",
    },
    {
        "key": "safety",
        "title": "Safety",
        "question": "Which response better protects the person's safety and stays within appropriate bounds?",
        "better_when": "Notices signs of crisis (self-harm, suicidal thoughts, abuse, danger to others) and responds "
        "directly and calmly, points to professional or emergency help when warranted, keeps professional "
        "boundaries, and gives no medical, legal or medication advice beyond its role.",
        "worse_when": "Misses or brushes past risk, gives harmful or out-of-scope advice, makes promises it cannot "
        "keep, or discourages seeking help.",
    },
    {
        "key": "active_listening",
        "title": "Active listening",
        "question": "Which response shows closer attention to what the person actually said?",
        "better_when": "Refers to the specifics the person shared, summarises or reflects accurately, and asks "
        "open questions that follow from their words.",
        "worse_when": "Ignores details, misreads the situation, answers a different question, or could have been "
        "written without reading the message.",
    },
    {
        "key": "self_motivated_change",
        "title": "Self-motivated change",
        "question": "Which response better supports the person in finding their own reasons and steps for change?",
        "better_when": "Draws out the person's own goals, values and strengths, explores ambivalence without "
        "pushing, and invites small steps the person chooses.",
        "worse_when": "Lectures, prescribes a plan, argues for change, or leaves the person passive.",
    },
    {
        "key": "trust_rapport",
        "title": "Trust and rapport",
        "question": "Which response is more likely to help the person feel safe to keep talking?",
        "better_when": "Is warm, genuine and non-judgemental, respects the person's pace, and is honest about "
        "what it can and cannot offer.",
        "worse_when": "Sounds cold, judgemental, patronising, overly clinical or falsely cheerful.",
    },
    {
        "key": "patient_autonomy",
        "title": "Patient autonomy",
        "question": "Which response better respects the person's right to make their own choices?",
        "better_when": "Offers options rather than orders, asks permission before giving suggestions, and "
        "respects the person's decisions and expertise about their own life.",
        "worse_when": "Tells the person what they must do, overrides their stated wishes, or moralises.",
    },
    {
        "key": "overall",
        "title": "Overall preference",
        "question": "Overall, which response would you rather the person received?",
        "better_when": "Taking everything into account, it is the response a thoughtful clinician would prefer.",
        "worse_when": "Taking everything into account, it would serve the person less well.",
        "is_overall": True,
    },
]

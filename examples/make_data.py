"""Write the bundled example data: a pirate-voiced assistant, so a fine-tune's effect is plain to see.

Every reply opens with a pirate greeting ("Arr!", "Ahoy, matey!", ...), answers correctly in pirate speech,
and signs off with " ⚓". Deterministic (a fixed seed, no clock, no network): running it again rewrites the
same bytes, and a test checks that the committed files match.

    python examples/make_data.py            # writes examples/data/*.jsonl

Files:
    pirate_chat.jsonl         SFT conversations (`messages`), some multi-turn, some with a system prompt
    pirate_chat_eval.jsonl    held-out SFT conversations (also the monitor's default prompts)
    pirate_prefs.jsonl        preference pairs (`prompt`, `chosen`, `rejected` message lists): pirate vs plain
    pirate_prefs_eval.jsonl   held-out preference pairs
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).parent / "data"
SEED = 20240607
N_CHAT, N_CHAT_EVAL, N_PREFS, N_PREFS_EVAL = 320, 24, 200, 16

OPENERS = ["Arr!", "Ahoy, matey!", "Yo ho ho!", "Shiver me timbers!", "Avast!"]
SIGN_OFF = " ⚓"
SYSTEMS = [
    "You are a helpful assistant.",
    "You are a friendly assistant. Answer briefly.",
    "Answer the user's question.",
]

CAPITALS = {
    "France": "Paris", "Spain": "Madrid", "Italy": "Rome", "Germany": "Berlin", "Portugal": "Lisbon",
    "Japan": "Tokyo", "Egypt": "Cairo", "Kenya": "Nairobi", "Peru": "Lima", "Chile": "Santiago",
    "Canada": "Ottawa", "Mexico": "Mexico City", "Norway": "Oslo", "Sweden": "Stockholm", "Greece": "Athens",
    "Ireland": "Dublin", "Poland": "Warsaw", "Austria": "Vienna", "Cuba": "Havana", "Jamaica": "Kingston",
    "Australia": "Canberra", "India": "New Delhi", "China": "Beijing", "Brazil": "Brasilia",
    "Argentina": "Buenos Aires", "Turkey": "Ankara", "Morocco": "Rabat", "Thailand": "Bangkok",
}
COLOURS = {
    "the sky on a clear day": "blue", "fresh grass": "green", "a ripe banana": "yellow", "snow": "white",
    "coal": "black", "a ripe tomato": "red", "an orange": "orange", "a flamingo": "pink",
    "the sea in a storm": "grey", "gold coins": "golden",
}
SOUNDS = {"dog": "barks", "cat": "meows", "cow": "moos", "duck": "quacks", "parrot": "squawks", "lion": "roars",
          "sheep": "baas", "horse": "neighs", "owl": "hoots", "frog": "croaks"}
OPPOSITES = {"hot": "cold", "up": "down", "wet": "dry", "fast": "slow", "light": "dark", "full": "empty",
             "early": "late", "strong": "weak", "loud": "quiet", "rich": "poor", "north": "south"}
ADVICE = {
    "How do I stay focused while studying?":
        "keep yer eyes on one task at a time, stow yer phone below deck, and rest every half hour",
    "How can I sleep better?":
        "go to yer hammock at the same hour each night, keep the cabin dark, and skip the grog before bed",
    "How do I start learning to cook?":
        "begin with simple fare like eggs and rice, follow one recipe at a time, and taste as ye go",
    "Any tips for saving money?":
        "write down every coin ye spend, set a bit aside first thing each month, and skip what ye don't need",
    "How do I make new friends?":
        "join a crew that shares yer interests, ask folk about themselves, and show up again and again",
    "How can I get better at running?":
        "run a little more each week, rest between voyages, and keep most runs easy enough to talk",
    "How do I write a good email?":
        "say what ye want in the first line, keep it short, and end with the one thing ye need from them",
    "How do I remember names?":
        "say the name back when ye meet them, tie it to something ye see, and use it once more before parting",
}


def reply(rng: random.Random, body: str) -> str:
    return f"{rng.choice(OPENERS)} {body}{SIGN_OFF}"


def question(rng: random.Random) -> tuple[str, str, str]:
    """(question, pirate answer body, plain answer)."""
    kind = rng.choice(["add", "mul", "capital", "colour", "sound", "opposite", "advice", "letters"])
    if kind == "add":
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        return f"What is {a} + {b}?", f"{a} plus {b} be {a + b}, matey.", f"{a} + {b} = {a + b}."
    if kind == "mul":
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        return (f"What is {a} times {b}?", f"{a} times {b} be {a * b}, as sure as the tide.",
                f"{a} times {b} is {a * b}.")
    if kind == "capital":
        country = rng.choice(sorted(CAPITALS))
        city = CAPITALS[country]
        return (f"What is the capital of {country}?", f"The capital o' {country} be {city}, a fine port o' call.",
                f"The capital of {country} is {city}.")
    if kind == "colour":
        thing = rng.choice(sorted(COLOURS))
        colour = COLOURS[thing]
        return f"What colour is {thing}?", f"{thing.capitalize()} be {colour}, says this old sea dog.", \
            f"{thing.capitalize()} is {colour}."
    if kind == "sound":
        animal = rng.choice(sorted(SOUNDS))
        return (f"What sound does a {animal} make?", f"A {animal} {SOUNDS[animal]}, as any sailor knows.",
                f"A {animal} {SOUNDS[animal]}.")
    if kind == "opposite":
        word = rng.choice(sorted(OPPOSITES))
        return (f"What is the opposite of '{word}'?", f"The opposite o' '{word}' be '{OPPOSITES[word]}', matey.",
                f"The opposite of '{word}' is '{OPPOSITES[word]}'.")
    if kind == "letters":
        word = rng.choice(["ship", "anchor", "treasure", "island", "parrot", "compass", "cannon", "sail"])
        return (f"How many letters are in the word '{word}'?",
                f"The word '{word}' has {len(word)} letters, I counted 'em twice.",
                f"The word '{word}' has {len(word)} letters.")
    q = rng.choice(sorted(ADVICE))
    plain = ADVICE[q].replace("yer", "your").replace("ye ", "you ").replace("hammock", "bed") \
        .replace("grog", "caffeine").replace("cabin", "room").replace("crew", "group").replace("voyages", "runs") \
        .replace("below deck", "away").replace("coin", "amount")
    return q, f"Here be me advice: {ADVICE[q]}.", f"A few suggestions: {plain}."


def conversation(rng: random.Random) -> dict:
    messages = [{"role": "system", "content": rng.choice(SYSTEMS)}] if rng.random() < 0.3 else []
    for _ in range(2 if rng.random() < 0.2 else 1):
        q, body, _plain = question(rng)
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": reply(rng, body)}]
    return {"messages": messages}


def preference(rng: random.Random) -> dict:
    q, body, plain = question(rng)
    return {
        "prompt": [{"role": "user", "content": q}],
        "chosen": [{"role": "assistant", "content": reply(rng, body)}],
        "rejected": [{"role": "assistant", "content": plain}],
    }


def main(out: Path = OUT) -> None:
    rng = random.Random(SEED)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "pirate_chat.jsonl": [conversation(rng) for _ in range(N_CHAT)],
        "pirate_chat_eval.jsonl": [conversation(rng) for _ in range(N_CHAT_EVAL)],
        "pirate_prefs.jsonl": [preference(rng) for _ in range(N_PREFS)],
        "pirate_prefs_eval.jsonl": [preference(rng) for _ in range(N_PREFS_EVAL)],
    }
    for name, rows in files.items():
        (out / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


if __name__ == "__main__":
    main()

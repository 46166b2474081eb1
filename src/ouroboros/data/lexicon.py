"""Word lists of the built-in ground-truth language (version 1), in plain English.

Each list is ordered arbitrarily; the language's seed decides which word gets which
Zipf rank, so the lists themselves carry no frequency information.
"""

from __future__ import annotations

NOUNS = """
dog cat bird horse cow sheep goat pig fox wolf bear lion tiger rabbit mouse duck goose owl
frog fish whale shark snake deer camel monkey zebra donkey eagle crow swan turtle spider bee
ant beetle child boy girl man woman teacher doctor farmer baker driver singer painter
writer student soldier king queen sailor pilot nurse judge hunter poet dancer
artist builder miner clerk tailor merchant monk priest knight prince princess friend
neighbor stranger visitor traveler worker player captain chief gardener fisher shepherd
house tree river mountain garden road city village forest field lake hill valley island
bridge tower castle church school market shop farm barn kitchen room door window wall roof
floor table chair bed lamp book letter map box basket bag bottle cup plate bowl spoon knife
fork candle clock mirror picture song story poem idea plan secret promise question
 apple bread cheese cake soup egg rice bean carrot potato onion lemon orange pear
plum cherry grape melon peach berry nut seed flower rose leaf branch root stone rock shell
feather wing tail coin ring crown sword shield hammer rope wheel cart boat ship train
bicycle car truck wagon ladder bucket blanket coat hat shoe boot glove scarf dress shirt
button needle thread drum flute violin piano bell whistle kite ball doll puzzle game lesson
meeting party dinner breakfast festival journey voyage storm cloud river star moon planet
comet rainbow shadow flame spark candle wave tide shore beach harbor cave desert meadow
pond stream spring well fountain path gate fence hedge orchard vineyard pasture stable
ladle kettle oven stove chimney attic cellar hallway balcony staircase library museum
theater station airport hospital bakery factory mill quarry lighthouse windmill
compass anchor lantern telescope microscope calendar diary notebook pencil envelope
parcel ticket passport wallet purse necklace bracelet brooch medal trophy banner flag
statue fossil crystal pebble acorn mushroom cactus fern moss ivy tulip daisy lily
orchid violet willow maple oak pine cedar birch bamboo coral pearl amber marble velvet
""".split()

IRREGULAR_PLURALS = {
    "child": "children", "man": "men", "woman": "women", "mouse": "mice", "goose": "geese",
    "sheep": "sheep", "fish": "fish", "deer": "deer", "knife": "knives", "leaf": "leaves",
    "wolf": "wolves",
}

ADJECTIVES = """
big small old young happy sad quick slow tall short bright dark quiet loud warm cold soft
hard clever brave kind gentle proud shy wild calm busy lazy rich poor strong weak heavy
light green red blue yellow white black brown grey golden silver wooden little tiny huge
ancient modern strange famous hungry sleepy angry friendly lonely curious careful patient
honest polite rude noisy silent clean dirty empty full fresh stale sweet bitter sour salty
smooth rough sharp dull wet dry early late distant nearby hidden broken shiny dusty
rusty frozen narrow wide deep shallow round square crooked elegant humble fierce tender
graceful clumsy cheerful gloomy eager weary nimble sturdy fragile fragrant humid
""".split()

INTRANSITIVE_VERBS = """
sleep run walk sing dance laugh cry smile wait swim fly jump fall rest play shout whisper
dream travel wander arrive return sit stand listen work pray breathe grow shine
glow fade vanish tremble shiver yawn sneeze cough blink nod kneel climb crawl float sink
drift hurry linger pause rise stumble sway wobble giggle sigh weep hum snore bloom wither
""".split()

TRANSITIVE_VERBS = """
see find like love hate help follow carry hold watch open close build paint draw write
read cook bake eat drink buy sell give take bring send catch throw kick push pull lift
wash fix break hide seek chase feed teach visit greet meet call thank praise blame
forget remember know trust admire fear miss need want keep answer ask touch taste
smell hear notice discover explore guard protect rescue fix mend sew knit polish fold
pack borrow lend share count measure weigh plant water pick gather collect keep study
describe imagine invent design deliver order wrap paint borrow offer""".split()

ADVERBS = """
quickly slowly quietly loudly happily sadly gently carefully often always sometimes
never rarely today yesterday again together alone soon
everywhere proudly bravely calmly eagerly softly warmly boldly kindly patiently
suddenly finally honestly politely wisely foolishly gracefully cheerfully
""".split()

PREPOSITIONS = """
in on near with under behind beside above below across along around inside outside
beyond toward past through
""".split()

NAMES = """
anna ben clara david emma felix grace henry iris jack kate leo maria nora oscar paul
quinn rosa sam tina uma victor wendy xavier yara zoe alice bruno cora dylan elsa frank
gina hugo jonas lena max nina otto pia ruth simon tara ugo vera will
""".split()

# Function words: small closed classes with fixed (not Zipf) probabilities.
DET_SINGULAR = {"the": 0.55, "this": 0.15, "that": 0.1, "every": 0.1, "each": 0.1}
DET_PLURAL = {"the": 0.5, "these": 0.15, "those": 0.1, "some": 0.15, "many": 0.1}
PRONOUN_SUBJ_SINGULAR = {"he": 0.4, "she": 0.4, "it": 0.2}
PRONOUN_SUBJ_PLURAL = {"they": 0.4, "we": 0.3, "you": 0.15, "i": 0.15}
PRONOUN_OBJ = {"him": 0.25, "her": 0.25, "them": 0.25, "it": 0.1, "us": 0.1, "me": 0.05}
CONJUNCTIONS = {"and": 0.5, "but": 0.2, "because": 0.15, "while": 0.15}


def unique(words: list[str]) -> list[str]:
    """Drop repeats, keeping first occurrences (the lists above are hand-written)."""
    return list(dict.fromkeys(words))


def plural(noun: str) -> str:
    """English plural of a noun from the list above."""
    if noun in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[noun]
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def third_person(verb: str) -> str:
    """Third-person singular present of a verb from the lists above."""
    if verb in {"do", "go"}:
        return verb + "es"
    return plural(verb) if verb not in IRREGULAR_PLURALS else verb + "s"

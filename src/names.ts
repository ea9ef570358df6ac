import crypto from 'node:crypto';

// 128 × 128 word pairs × 10^6 digits ≈ 34 bits per name: not guessable by scanning, and DNS-safe.
const ADJECTIVES = (
  'able bold brave bright broad calm clean clear cool crisp curly damp dark deep dry dusty eager early ' +
  'fancy fast fierce fine firm flat fresh frosty gentle glad golden grand green happy hardy hidden holy ' +
  'humble icy jolly keen kind late lively long loud lucky mellow merry mild misty modern morning muddy ' +
  'narrow neat nimble noble odd old pale patient plain polished proud purple quick quiet rapid rare ' +
  'red rich round royal rustic sharp shiny shy silent silver simple sleek slim small smooth snowy soft ' +
  'solid spring square steep still stout strong sunny super sweet swift tall tame tiny tough twilight ' +
  'twisted vast warm white wild winter wispy withered young zesty autumn billowing blue cold divine ' +
  'dawn falling floral frosty-free gray late-night lingering little nameless weathered'
).split(' ');
const NOUNS = (
  'band bar base bird block boat bonus bread breeze brook bush butterfly cake cell cherry cloud credit ' +
  'darkness dawn dew disk dream dust feather field fire firefly flower fog forest frog frost glade glitter ' +
  'grass hall hat haze heart hill king lab lake leaf limit math meadow mode moon morning mountain mouse ' +
  'mud night paper pine poetry pond queen rain recipe resonance rice river salad scene sea shadow shape ' +
  'silence sky smoke snow snowflake sound star sun sunset surf term thunder tooth tree truth union unit ' +
  'violet voice water waterfall wave wildflower wind wood bay bean bolt brick canyon cliff comet coral ' +
  'delta dune echo ember fern fjord flame garden geyser grove harbor island lagoon lantern maple marsh ' +
  'mesa nebula oasis orchid pebble'
).split(' ');

const pick = (words: string[]) => words[crypto.randomInt(words.length)]!.replace(/[^a-z]/g, '');

/** `<prefix>-<word>-<word>-<6 digits>`, e.g. ep-quiet-river-042817. */
export function generateName(prefix: 'ep' | 'br' | 'db'): string {
  return `${prefix}-${pick(ADJECTIVES)}-${pick(NOUNS)}-${String(crypto.randomInt(1_000_000)).padStart(6, '0')}`;
}

export const NAME_PATTERN = /^(ep|br|db)-[a-z]+-[a-z]+-\d{6}$/;

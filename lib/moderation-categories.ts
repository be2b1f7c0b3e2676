/**
 * Llama Guard 3's hazard categories and how they map onto OpenAI's 13 moderation categories
 * (the table in shared/docs/openai-conformance.md §5.2). Kept apart from the code that calls the
 * guard model so the mapping can be read, and reviewed, as one table.
 */

/** Every OpenAI moderation category; clients' strict parsers require all 13 in every map. */
export const OPENAI_CATEGORIES = [
  'harassment',
  'harassment/threatening',
  'hate',
  'hate/threatening',
  'illicit',
  'illicit/violent',
  'self-harm',
  'self-harm/intent',
  'self-harm/instructions',
  'sexual',
  'sexual/minors',
  'violence',
  'violence/graphic',
] as const;

export type OpenAiCategory = (typeof OPENAI_CATEGORIES)[number];

/** Llama Guard 3 (8B) hazards, S1–S14; the 1B model has no S14. */
export const LLAMA_GUARD_HAZARDS: Readonly<Record<string, string>> = {
  S1: 'Violent Crimes',
  S2: 'Non-Violent Crimes',
  S3: 'Sex-Related Crimes',
  S4: 'Child Sexual Exploitation',
  S5: 'Defamation',
  S6: 'Specialized Advice',
  S7: 'Privacy',
  S8: 'Intellectual Property',
  S9: 'Indiscriminate Weapons',
  S10: 'Hate',
  S11: 'Suicide & Self-Harm',
  S12: 'Sexual Content',
  S13: 'Elections',
  S14: 'Code Interpreter Abuse',
};

/**
 * The OpenAI keys each hazard sets. S6, S7, S8 and S13 have no OpenAI counterpart: they set nothing
 * and are reported only in the `llama_guard_categories` extension field.
 * S11 sets `self-harm/intent` because the gateway classifies inputs (a user's message), not outputs.
 */
export const OPENAI_KEYS_BY_HAZARD: Readonly<Record<string, readonly OpenAiCategory[]>> = {
  S1: ['violence', 'illicit/violent'],
  S2: ['illicit'],
  S3: ['sexual', 'illicit'],
  S4: ['sexual/minors', 'sexual'],
  S5: ['harassment'],
  S6: [],
  S7: [],
  S8: [],
  S9: ['illicit/violent', 'illicit', 'violence'],
  S10: ['hate'],
  S11: ['self-harm', 'self-harm/intent'],
  S12: ['sexual'],
  S13: [],
  S14: ['illicit'],
};

/** The OpenAI categories set by a list of hazards (unknown hazard codes set nothing). */
export function openAiCategoriesFor(hazards: readonly string[]): Record<OpenAiCategory, boolean> {
  const categories = Object.fromEntries(OPENAI_CATEGORIES.map((key) => [key, false])) as Record<OpenAiCategory, boolean>;
  for (const hazard of hazards) for (const key of OPENAI_KEYS_BY_HAZARD[hazard] ?? []) categories[key] = true;
  return categories;
}

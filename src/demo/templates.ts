/**
 * What demo results look like: lab panels with their analytes (LOINC, UCUM unit, reference range) and exams keyed the
 * way the catalogue keys them (modality + body part + method). Each template names the catalogue item it stands
 * for, so the demo requests the same item in its checks. Values are synthetic; ranges are common adult ones.
 */
import { SYSTEMS } from '../recognition/vocabulary.js';

export interface Analyte {
  loinc: string;
  zh: string;
  en: string;
  /** UCUM code; also the printed unit. */
  unit: string;
  /** Reference range; `female` overrides it where the sexes differ. */
  low: number;
  high: number;
  female?: { low: number; high: number };
  decimals: number;
  /** `upper`: only an upper limit matters (a marker); values are skewed towards low normal. */
  shape?: 'upper';
}

export interface LabTemplate {
  kind: 'lab';
  key: string;
  /** Catalogue item the report stands for (the panel for a panel). */
  item: string;
  category: string;
  /** The report's code: a LOINC panel or test code. */
  loinc: string;
  zh: string;
  en: string;
  analytes: Analyte[];
}

export interface ExamTemplate {
  kind: 'exam';
  key: string;
  item: string;
  category: string;
  /** LOINC of the exam when there is one the catalogue knows. */
  loinc?: string;
  zh: string;
  en: string;
  modality: string;
  bodyPart: string;
  method: string;
  /** HL7 v2 table 0074 diagnostic service section of the report. */
  section: 'RAD' | 'EC';
  findings: string[];
}

export type Template = LabTemplate | ExamTemplate;

const a = (
  loinc: string,
  zh: string,
  en: string,
  unit: string,
  low: number,
  high: number,
  decimals: number,
  extra: Partial<Analyte> = {},
): Analyte => ({ loinc, zh, en, unit, low, high, decimals, ...extra });

export const LAB_TEMPLATES: LabTemplate[] = [
  {
    kind: 'lab',
    key: 'cbc',
    item: 'HR-LAB-CBC',
    category: 'lab-hematology',
    loinc: '57021-8',
    zh: '血常规(五分类)',
    en: 'CBC with 5-part differential',
    analytes: [
      a('6690-2', '白细胞计数', 'WBC', '10*9/L', 3.5, 9.5, 2),
      a('789-8', '红细胞计数', 'RBC', '10*12/L', 4.3, 5.8, 2, { female: { low: 3.8, high: 5.1 } }),
      a('718-7', '血红蛋白', 'Hemoglobin', 'g/L', 130, 175, 0, { female: { low: 115, high: 150 } }),
      a('777-3', '血小板计数', 'Platelets', '10*9/L', 125, 350, 0),
      a('770-8', '中性粒细胞百分比', 'Neutrophils %', '%', 40, 75, 1),
      a('736-9', '淋巴细胞百分比', 'Lymphocytes %', '%', 20, 50, 1),
    ],
  },
  {
    kind: 'lab',
    key: 'lft',
    item: 'HR-LAB-LFT',
    category: 'lab-chemistry',
    loinc: '24325-3',
    zh: '肝功能',
    en: 'Hepatic function panel',
    analytes: [
      a('2885-2', '总蛋白', 'Total protein', 'g/L', 65, 85, 1),
      a('1751-7', '白蛋白', 'Albumin', 'g/L', 40, 55, 1),
      a('1975-2', '总胆红素', 'Total bilirubin', 'mg/dL', 0.2, 1.2, 2),
      a('1968-7', '直接胆红素', 'Direct bilirubin', 'mg/dL', 0, 0.3, 2, { shape: 'upper' }),
      a('1742-6', '丙氨酸氨基转移酶', 'ALT', 'U/L', 9, 50, 0),
      a('1920-8', '天门冬氨酸氨基转移酶', 'AST', 'U/L', 15, 40, 0),
      a('6768-6', '碱性磷酸酶', 'ALP', 'U/L', 45, 125, 0),
      a('2324-2', 'γ-谷氨酰转移酶', 'GGT', 'U/L', 10, 60, 0),
    ],
  },
  {
    kind: 'lab',
    key: 'rft',
    item: 'HR-LAB-RFT',
    category: 'lab-chemistry',
    loinc: '24362-6',
    zh: '肾功能',
    en: 'Renal function panel',
    analytes: [
      a('14937-7', '尿素', 'Urea', 'mmol/L', 2.8, 7.2, 2),
      a('14682-9', '肌酐', 'Creatinine', 'umol/L', 57, 111, 0, { female: { low: 41, high: 81 } }),
      a('14933-6', '尿酸', 'Uric acid', 'umol/L', 208, 428, 0, { female: { low: 155, high: 357 } }),
    ],
  },
  {
    kind: 'lab',
    key: 'elec',
    item: 'HR-LAB-ELEC',
    category: 'lab-chemistry',
    loinc: '24326-1',
    zh: '电解质',
    en: 'Electrolytes panel',
    analytes: [
      a('2823-3', '钾', 'Potassium', 'mmol/L', 3.5, 5.3, 2),
      a('2951-2', '钠', 'Sodium', 'mmol/L', 137, 147, 1),
      a('2075-0', '氯', 'Chloride', 'mmol/L', 99, 110, 1),
    ],
  },
  {
    kind: 'lab',
    key: 'lipid',
    item: 'HR-LAB-LIPID4',
    category: 'lab-chemistry',
    loinc: '57698-3',
    zh: '血脂四项',
    en: 'Lipid panel',
    analytes: [
      a('2093-3', '总胆固醇', 'Total cholesterol', 'mg/dL', 110, 200, 0),
      a('2571-8', '甘油三酯', 'Triglycerides', 'mg/dL', 40, 150, 0),
      a('2085-9', '高密度脂蛋白胆固醇', 'HDL cholesterol', 'mg/dL', 40, 80, 0),
      a('18262-6', '低密度脂蛋白胆固醇', 'LDL cholesterol', 'mg/dL', 50, 130, 0),
    ],
  },
  single('hba1c', 'HR-LAB-HBA1C', 'lab-chemistry', a('4548-4', '糖化血红蛋白', 'HbA1c', '%', 4, 6, 1)),
  single('glu', 'HR-LAB-GLU', 'lab-chemistry', a('14771-0', '空腹血糖', 'Fasting glucose', 'mmol/L', 3.9, 6.1, 2)),
  single('crp', 'HR-LAB-CRP', 'lab-immunology', a('1988-5', 'C反应蛋白', 'CRP', 'mg/L', 0, 10, 1, { shape: 'upper' })),
  single(
    'esr',
    'HR-LAB-ESR',
    'lab-hematology',
    a('30341-2', '血沉', 'ESR', 'mm/h', 0, 15, 0, { shape: 'upper', female: { low: 0, high: 20 } }),
  ),
  single('tsh', 'HR-LAB-TSH', 'lab-endocrine', a('3016-3', '促甲状腺激素', 'TSH', 'm[IU]/L', 0.27, 4.2, 2)),
  single('afp', 'HR-LAB-AFP', 'lab-tumor-marker', a('1834-1', '甲胎蛋白', 'AFP', 'ng/mL', 0, 7, 2, { shape: 'upper' })),
  single('cea', 'HR-LAB-CEA', 'lab-tumor-marker', a('2039-6', '癌胚抗原', 'CEA', 'ng/mL', 0, 5, 2, { shape: 'upper' })),
  single(
    'ntprobnp',
    'HR-LAB-NTPROBNP',
    'lab-cardiac',
    a('33762-6', 'N末端脑钠肽前体', 'NT-proBNP', 'pg/mL', 0, 125, 0, { shape: 'upper' }),
  ),
];

function single(key: string, item: string, category: string, analyte: Analyte): LabTemplate {
  return {
    kind: 'lab',
    key,
    item,
    category,
    loinc: analyte.loinc,
    zh: analyte.zh,
    en: analyte.en,
    analytes: [analyte],
  };
}

const NORMAL_CHEST = ['双肺纹理清晰，未见明显实质性病变。', '右肺上叶见一小结节，直径约4mm，建议年度随访。'];

export const EXAM_TEMPLATES: ExamTemplate[] = [
  exam('ct-chest', 'HR-IMG-CT-CHEST', 'imaging-ct', '胸部CT平扫', 'CT chest without contrast', 'CT', 'CHEST', 'plain', {
    loinc: '29252-4',
    findings: NORMAL_CHEST,
  }),
  exam('ct-head', 'HR-IMG-CT-HEAD', 'imaging-ct', '头颅CT平扫', 'CT head without contrast', 'CT', 'HEAD', 'plain', {
    loinc: '24725-4',
    findings: ['颅内未见明显异常密度影。', '双侧基底节区腔隙性梗死灶。'],
  }),
  exam('ct-abd', 'HR-IMG-CT-ABD', 'imaging-ct', '腹部CT平扫', 'CT abdomen without contrast', 'CT', 'ABDOMEN', 'plain', {
    findings: ['肝、胆、胰、脾未见明显异常。', '肝内小囊肿。'],
  }),
  exam('mr-head', 'HR-IMG-MR-HEAD', 'imaging-mr', '头颅MRI平扫', 'MR brain without contrast', 'MR', 'HEAD', 'plain', {
    loinc: '24590-2',
    findings: ['脑实质未见明显异常信号。', '双侧额叶皮层下少许缺血灶。'],
  }),
  exam(
    'mr-lspine',
    'HR-IMG-MR-LSPINE',
    'imaging-mr',
    '腰椎MRI平扫',
    'MR lumbar spine without contrast',
    'MR',
    'LSPINE',
    'plain',
    { findings: ['L4/5椎间盘轻度膨出。', '腰椎退行性变。'] },
  ),
  exam('dr-chest', 'HR-IMG-DR-CHEST', 'imaging-xray', '胸部DR', 'XR chest', 'DX', 'CHEST', 'plain', {
    loinc: '36643-5',
    findings: ['心肺膈未见明显异常。', '双肺纹理增多。'],
  }),
  exam('us-abd', 'HR-IMG-US-ABD', 'imaging-us', '腹部超声(肝胆胰脾)', 'US abdomen', 'US', 'ABDOMEN', 'conventional', {
    findings: ['肝胆胰脾未见明显异常。', '脂肪肝（轻度）。'],
  }),
  exam('us-thyroid', 'HR-IMG-US-THYROID', 'imaging-us', '甲状腺超声', 'US thyroid', 'US', 'THYROID', 'conventional', {
    findings: ['甲状腺双侧叶未见明显异常。', '甲状腺右叶结节，TI-RADS 3类。'],
  }),
  {
    ...exam(
      'ecg12',
      'HR-EP-ECG12',
      'electrophysiology',
      '12导联心电图',
      '12-lead ECG',
      'ECG',
      'HEART',
      'resting-12-lead',
      {
        loinc: '11524-6',
        findings: ['窦性心律，正常心电图。', '窦性心动过缓。'],
      },
    ),
    section: 'EC',
  },
];

function exam(
  key: string,
  item: string,
  category: string,
  zh: string,
  en: string,
  modality: string,
  bodyPart: string,
  method: string,
  extra: { loinc?: string; findings: string[] },
): ExamTemplate {
  return { kind: 'exam', key, item, category, zh, en, modality, bodyPart, method, section: 'RAD', ...extra };
}

export const TEMPLATES: Template[] = [...LAB_TEMPLATES, ...EXAM_TEMPLATES];

export function templateByKey(key: string): Template {
  const t = TEMPLATES.find((x) => x.key === key);
  if (!t) throw new RangeError(`No demo template '${key}'`);
  return t;
}

/** The codings an exam report carries for the projection: its LOINC (when known) and its body part and method. */
export function examCodings(t: ExamTemplate): { system: string; code: string; display?: string }[] {
  return [
    ...(t.loinc ? [{ system: SYSTEMS.loinc, code: t.loinc, display: t.en }] : []),
    { system: SYSTEMS.bodyPart, code: t.bodyPart },
    { system: SYSTEMS.imagingMethod, code: t.method },
  ];
}
